/* libFuzzer target for the CLI's line format (tools/lineformat.c), the escapes of cstore
 * dump/load. Built and run by `make fuzz`.
 *
 * Input: any bytes, used two ways.
 *   - As escaped text: lineformat_unescape into a buffer of exactly as many bytes as the input
 *     (ASan catches a write past it). When that succeeds, the result escaped again must unescape
 *     back to the same bytes.
 *   - As raw bytes: lineformat_write_escaped (into memory) must produce at most twice as many
 *     bytes, none of them a raw TAB, LF, CR or NUL, and unescape back to the input exactly.
 * A refused input must come with a reason. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/lineformat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Escape p[0..n), check the escaped form and that it unescapes back to p. */
static void round_trip(const char *p, size_t n)
{
    char *esc = NULL;
    size_t esc_len = 0;
    FILE *f = open_memstream(&esc, &esc_len);
    if (!f)
        abort();
    lineformat_write_escaped(f, p, n);
    if (fclose(f) != 0 || esc_len > 2 * n)
        abort();
    for (size_t i = 0; i < esc_len; i++)
        if (esc[i] == '\t' || esc[i] == '\n' || esc[i] == '\r' || esc[i] == '\0')
            abort();
    char *back = malloc(esc_len ? esc_len : 1);
    if (!back)
        abort();
    size_t back_len = 0;
    if (lineformat_unescape(esc, esc_len, back, &back_len) != NULL || back_len != n ||
        (n && memcmp(back, p, n) != 0))
        abort();
    free(back);
    free(esc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *out = malloc(size ? size : 1);
    if (!out)
        abort();
    size_t out_len = 0;
    const char *bad = lineformat_unescape(in, size, out, &out_len);
    if (bad == NULL) {
        if (out_len > size)
            abort();
        round_trip(out, out_len);
    } else if (bad[0] == '\0') {
        abort();
    }
    free(out);
    round_trip(in, size);
    return 0;
}
