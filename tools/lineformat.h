/* The line format of the cstore CLI (scan, dump, load): KEY<TAB>VALUE<LF> with the bytes that
 * would break a line escaped. The rules are in lineformat.c. */
#ifndef CS_LINEFORMAT_H
#define CS_LINEFORMAT_H

#include <stddef.h>
#include <stdio.h>

/* Write p[0..n) to f with backslash, TAB, LF, CR and NUL escaped (at most 2n bytes). p may be
 * NULL when n is 0. Write errors are left in f's error flag (ferror). */
void lineformat_write_escaped(FILE *f, const void *p, size_t n);

/* Undo the escapes of in[0..n) into out, which has room for n bytes (the result is never longer;
 * out may not overlap in). Returns NULL and sets *out_len; or, on the first bad escape, a static
 * description of it (then out holds a partial result and *out_len is unchanged). */
const char *lineformat_unescape(const char *in, size_t n, char *out, size_t *out_len);

#endif
