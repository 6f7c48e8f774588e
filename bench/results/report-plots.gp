set terminal pngcairo size 900,520 noenhanced font "sans,10"
set grid ytics
set bmargin 4
set datafile missing "NaN"
set offsets 0, 0, graph 0.08, 0
set output 'report-core-1-throughput.png'
set title 'Generated tokens/s vs parallelism — unique prompts: qwen2-0.5b-q8_0.gguf (0.5b, q8_0, 506 MiB)'
set xlabel "parallelism (nightshift --parallel K, llama-server -np K)"
set ylabel "generated tokens/s"
set logscale x 2
set xrange [5.333333333333333:48]
set yrange [0:*]
set key top left
set style data linespoints
unset style fill
plot 'report-core-1-throughput.dat' using 1:2 title "nightshift" lw 2 pt 7 ps 1.2, '' using 1:3 title "llama-server" lw 2 pt 5 ps 1.2, 'report-core-1-batched.dat' using 1:2 with points pt 9 ps 1.8 title "llama-batched-bench (ceiling)"
unset logscale x
unset xrange
set xrange [*:*]
set output 'report-core-2-throughput.png'
set title 'Generated tokens/s vs parallelism — unique prompts: qwen2-0.5b-q4_k.gguf (0.5b, q4_k, 317 MiB)'
set xlabel "parallelism (nightshift --parallel K, llama-server -np K)"
set ylabel "generated tokens/s"
set logscale x 2
set xrange [5.333333333333333:48]
set yrange [0:*]
set key top left
set style data linespoints
unset style fill
plot 'report-core-2-throughput.dat' using 1:2 title "nightshift" lw 2 pt 7 ps 1.2, '' using 1:3 title "llama-server" lw 2 pt 5 ps 1.2, 'report-core-2-batched.dat' using 1:2 with points pt 9 ps 1.8 title "llama-batched-bench (ceiling)"
unset logscale x
unset xrange
set xrange [*:*]
set output 'report-core-3-throughput.png'
set title 'Generated tokens/s vs parallelism — unique prompts: qwen2-1b-q8_0.gguf (1b, q8_0, 1307 MiB)'
set xlabel "parallelism (nightshift --parallel K, llama-server -np K)"
set ylabel "generated tokens/s"
set logscale x 2
set xrange [5.333333333333333:48]
set yrange [0:*]
set key top left
set style data linespoints
unset style fill
plot 'report-core-3-throughput.dat' using 1:2 title "nightshift" lw 2 pt 7 ps 1.2, '' using 1:3 title "llama-server" lw 2 pt 5 ps 1.2, 'report-core-3-batched.dat' using 1:2 with points pt 9 ps 1.8 title "llama-batched-bench (ceiling)"
unset logscale x
unset xrange
set xrange [*:*]
set output 'report-core-4-throughput.png'
set title 'Generated tokens/s vs parallelism — unique prompts: qwen2-1b-q4_k.gguf (1b, q4_k, 694 MiB)'
set xlabel "parallelism (nightshift --parallel K, llama-server -np K)"
set ylabel "generated tokens/s"
set logscale x 2
set xrange [5.333333333333333:48]
set yrange [0:*]
set key top left
set style data linespoints
unset style fill
plot 'report-core-4-throughput.dat' using 1:2 title "nightshift" lw 2 pt 7 ps 1.2, '' using 1:3 title "llama-server" lw 2 pt 5 ps 1.2, 'report-core-4-batched.dat' using 1:2 with points pt 9 ps 1.8 title "llama-batched-bench (ceiling)"
unset logscale x
unset xrange
set xrange [*:*]
set output 'report-core-5-throughput.png'
set title 'Generated tokens/s vs parallelism — heavy-tailed lengths: qwen2-0.5b-q8_0.gguf (0.5b, q8_0, 506 MiB)'
set xlabel "parallelism (nightshift --parallel K, llama-server -np K)"
set ylabel "generated tokens/s"
set logscale x 2
set xrange [5.333333333333333:48]
set yrange [0:*]
set key top left
set style data linespoints
unset style fill
plot 'report-core-5-throughput.dat' using 1:2 title "nightshift" lw 2 pt 7 ps 1.2, '' using 1:3 title "llama-server" lw 2 pt 5 ps 1.2
unset logscale x
unset xrange
set xrange [*:*]
set output 'report-prefix.png'
unset title
unset logscale
set xrange [*:*]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.8
set yrange [0:*]
set key off
unset xlabel
set multiplot layout 1,2 title 'Shared 1500-token instruction + short items (same requests, same model)'
set title "wall time (s), lower is better"
set ylabel "seconds"
plot 'report-prefix.dat' using 2:xtic(1) lc rgb "#1f77b4"
set title "prompt tokens computed, lower is better"
set ylabel "tokens"
plot 'report-prefix.dat' using 3:xtic(1) lc rgb "#ff7f0e"
unset multiplot
set output 'report-ttft.png'
unset multiplot
set style data steps
unset style fill
set title "Time to first token of real-time requests: idle vs while a batch runs"
set xlabel "TTFT (ms, log scale)"
set ylabel "fraction of requests"
set logscale x
set xrange [*:*]
set yrange [0:1.02]
set key bottom right
plot 'report-ttft-idle.dat' using 1:2 with steps lw 2 title "idle", 'report-ttft-loaded.dat' using 1:2 with steps lw 2 title "under batch load"
unset logscale x
set output 'report-forward.png'
unset multiplot
unset logscale
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set title "Upstream forwarding: request latency, saturated and at a fixed rate (same machine, instant upstream)"
unset xlabel
set ylabel "ms"
set xrange [*:*]
set yrange [0:*]
set key top left
plot 'report-forward.dat' using 2:xtic(1) title "p50", '' using 3 title "p99"
set output 'report-ingest.png'
unset multiplot
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [1:*]
set xrange [*:*]
set title "Batch-file ingest throughput (MB/s, log scale)"
unset xlabel
set ylabel "MB/s"
set key off
plot 'report-ingest.dat' using 2:xtic(1) lc rgb "#2ca02c"
unset logscale y
unset output
