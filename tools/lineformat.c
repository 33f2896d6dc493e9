/* Escapes of the cstore CLI's line format.
 *
 * scan, dump and load move records as lines KEY<TAB>VALUE<LF>. Keys and values are arbitrary
 * bytes, so the writer escapes the five that would break a line or be ambiguous, and the reader
 * undoes it:
 *   "\\" backslash   "\t" TAB   "\n" LF   "\r" CR   "\0" NUL
 * The reader also accepts "\xHH" (two hex digits, either case). Every other byte passes through
 * unchanged. Invariants: an escaped string never holds a raw TAB, LF, CR or NUL; unescaping what
 * the writer wrote gives back the original bytes; unescaping never makes a string longer (each
 * escape of 2 or 4 bytes stands for one byte), so an output buffer as long as the input always
 * suffices. The reader refuses, and never guesses at, an unknown escape, a "\x" without two hex
 * digits and a lone backslash at the end. */
#include "tools/lineformat.h"

#include "util.h"

void lineformat_write_escaped(FILE *f, const void *p, size_t n)
{
    if (n == 0) /* an empty value may come as NULL */
        return;
    const unsigned char *s = p;
    size_t run = 0; /* start of the bytes not written yet */
    for (size_t i = 0; i < n; i++) {
        const char *esc;
        switch (s[i]) {
        case '\\':
            esc = "\\\\";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\0':
            esc = "\\0";
            break;
        default:
            continue;
        }
        fwrite(s + run, 1, i - run, f);
        fputs(esc, f);
        run = i + 1;
    }
    fwrite(s + run, 1, n - run, f);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

const char *lineformat_unescape(const char *in, size_t n, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        cs_assert(o <= i); /* out never runs ahead of in: room for n bytes suffices */
        if (in[i] != '\\') {
            out[o++] = in[i];
            continue;
        }
        if (++i == n)
            return "lone backslash at the end (write \\\\ for a backslash)";
        switch (in[i]) {
        case '\\':
            out[o++] = '\\';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case '0':
            out[o++] = '\0';
            break;
        case 'x': {
            int hi = i + 1 < n ? hex_digit(in[i + 1]) : -1;
            int lo = i + 2 < n ? hex_digit(in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return "\\x needs two hex digits";
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
            break;
        }
        default:
            return "unknown escape (use \\\\ \\t \\n \\r \\0 or \\xHH)";
        }
    }
    cs_assert(o <= n);
    *out_len = o;
    return NULL;
}
