/*
 * jsonscan.c — see jsonscan.h.
 *
 * One pass, with the little state a JSON lexer needs: nesting depth, inside a string or
 * not, after a backslash or not; at depth 1 whether the next string is a member name or a
 * value, and the name of the member being read.
 */
#include "jsonscan.h"

#include <string.h>

long jsonscan_nul(const char *s, size_t n, const char *key, bool *in_key)
{
    size_t klen = key ? strlen(key) : 0;
    int depth = 0;
    bool expect_name = false;  /* depth 1 of an object: the next string is a member name */
    bool name_matches = false; /* the member being read is `key` */
    if (in_key)
        *in_key = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            size_t start = i + 1;
            bool is_name = depth == 1 && expect_name;
            bool is_value_of_key = depth == 1 && !expect_name && name_matches;
            for (i = start; i < n && s[i] != '"'; i++) {
                size_t at = i;
                bool nul = s[i] == '\0';
                if (s[i] == '\\' && i + 1 < n) {
                    nul = i + 5 < n && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0;
                    i++;
                }
                if (nul) {
                    if (in_key)
                        *in_key = is_value_of_key;
                    return (long)at;
                }
            }
            if (is_name) {
                name_matches = key && i - start == klen && memcmp(s + start, key, klen) == 0;
                expect_name = false;
            }
            continue;
        }
        switch (c) {
        case '{':
        case '[':
            if (++depth == 1)
                expect_name = c == '{';
            break;
        case '}':
        case ']':
            depth--;
            break;
        case ',':
            if (depth == 1)
                expect_name = true, name_matches = false;
            break;
        default:
            break;
        }
    }
    return -1;
}
