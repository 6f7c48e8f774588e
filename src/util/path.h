/*
 * path.h — questions about file paths that the CLI and the server both ask.
 *
 * THREADS: none of its own; every function is safe to call from any thread.
 */
#ifndef NS_UTIL_PATH_H
#define NS_UTIL_PATH_H

#include <stdbool.h>

/* Do a and b name the same file? By device and inode when both exist (hard links, symlinks
 * and "./x" vs "x" all match), else by the canonical path of the directory plus the last
 * component (a file about to be created is the same as another path naming it). */
bool path_same_file(const char *a, const char *b);

#endif
