/* RESP2, the Redis protocol, for cstored: a request parser (multibulk and inline commands) and a
 * reply writer. Pure: no I/O, no clock, no global state. The wire format, the limits and the
 * places where this differs from Redis are in resp.c's opening comment. */
#ifndef CS_RESP_H
#define CS_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Redis's defaults: proto-max-bulk-len, PROTO_INLINE_MAX_SIZE, the multibulk count Redis 6 took
 * and client-query-buffer-limit. */
#define RESP_ARGS_MAX_DEFAULT 1048576u
#define RESP_BULK_BYTES_MAX_DEFAULT (512u * 1024 * 1024)
#define RESP_INLINE_BYTES_MAX_DEFAULT (64u * 1024)
#define RESP_REQUEST_BYTES_MAX_DEFAULT (1024u * 1024 * 1024)

struct resp_limits {
    size_t args_max;          /* arguments per request (a multibulk's count, an inline's words) */
    size_t bulk_bytes_max;    /* bytes of one multibulk argument ($<len>) */
    size_t inline_bytes_max;  /* bytes of an inline line before its LF; also of a *<n> or $<len>
                                 line before its CR (Redis uses PROTO_INLINE_MAX_SIZE for both) */
    size_t request_bytes_max; /* bytes of all the arguments of one request together */
};

/* Fill *l with the RESP_*_DEFAULT values above. */
void resp_limits_default(struct resp_limits *l);

/* One argument of the request being parsed or just parsed: off is relative to the buf of the
 * resp_parse call (multibulk) or to the parser's scratch (inline). */
struct resp_arg {
    size_t off; /* first byte */
    size_t len; /* bytes */
};

/* Parser states (resp_parser.state). */
enum resp_state {
    RESP_ST_START = 0, /* before the first byte of a request */
    RESP_ST_INLINE,    /* looking for the LF that ends an inline line */
    RESP_ST_COUNT,     /* looking for the CR that ends "*<n>" */
    RESP_ST_BULK_LEN,  /* looking for the CR that ends "$<len>" */
    RESP_ST_BULK_DATA, /* waiting for <len> bytes and CRLF */
    RESP_ST_ERROR,     /* a protocol error was reported; every call repeats it */
};

/* A connection's request parser. Every offset is relative to the start of the buf passed to
 * resp_parse (the first byte of the request being parsed), so the caller may move its buffer
 * between calls. Fields are private to resp.c; they are here so that the caller can embed it. */
struct resp_parser {
    struct resp_limits lim; /* copied at init */
    enum resp_state state;  /* where in the request the next byte falls */
    size_t pos;             /* bytes of the request examined so far (next one to look at) */
    size_t line_off;        /* first byte of the line being looked at (its '*' or '$') */
    size_t args_left;       /* multibulk: arguments still to come */
    size_t bulk_len;        /* RESP_ST_BULK_DATA: the length of the argument being read */
    size_t request_bytes;   /* argument bytes of this request so far */
    struct resp_arg *args;  /* args[0..argc) of this request; args_cap entries allocated */
    size_t argc;            /* arguments parsed so far (all of them after RESP_OK) */
    size_t args_cap;        /* entries of args */
    char *scratch;          /* unescaped inline arguments; scratch_cap bytes (lazy) */
    size_t scratch_cap;     /* bytes of scratch */
    const char *base;       /* after RESP_OK: where multibulk offsets point (the caller's
                               buf) or scratch; NULL otherwise */
    const char *error;      /* RESP_ST_ERROR: the message (static or err_buf) */
    char err_buf[48];       /* the message when it quotes a byte */
    uint64_t scanned_bytes; /* bytes examined, over the parser's life (tests: linear work) */
};

enum { RESP_OK = 0, RESP_MORE = 1, RESP_EPROTO = -1 };

/* Initialize *p with a copy of *l. Returns 0, or -EINVAL when a limit is 0 or over SIZE_MAX / 4.
 * Allocates nothing until the first request (cannot fail with -ENOMEM today; callers should still
 * expect it). */
CS_MUST_CHECK int resp_parser_init(struct resp_parser *p, const struct resp_limits *l);
/* Release what *p holds. *p may then be initialized again. */
void resp_parser_free(struct resp_parser *p);

/* Parse the request at the start of buf[0..len): the connection's unconsumed bytes. After
 * RESP_MORE the next call must pass the same bytes again (possibly moved) followed by more; the
 * parser resumes where it stopped: it looks at a byte twice only when it is the last CR of a line
 * it could not finish or part of an inline line being split once whole. Returns:
 *   RESP_OK     a whole request: resp_parser_argc() arguments, read with resp_parser_arg();
 *               *used = the bytes it spans (the caller drops them before the next call). argc 0
 *               means an empty request ("\r\n", "\n", a line of blanks, "*0\r\n", "*-1\r\n"):
 *               Redis skips those without a reply, so should the caller. The parser is ready
 *               for the next request.
 *   RESP_MORE   the request is not complete: *used = 0.
 *   RESP_EPROTO malformed or over a limit: resp_parser_error() gives the message, in Redis's
 *               wording where Redis has one. Redis replies "-ERR <message>" and closes the
 *               connection. Every later call returns RESP_EPROTO again. *used = 0.
 *   -ENOMEM     growing the argument array or the inline scratch failed; nothing was consumed
 *               and the call may be repeated. *used = 0.
 * O(bytes not examined before) per call. */
CS_MUST_CHECK int resp_parse(struct resp_parser *p, const char *buf, size_t len, size_t *used);

/* Arguments of the request the last resp_parse returned RESP_OK for. */
size_t resp_parser_argc(const struct resp_parser *p);
/* Argument i < argc: returns its first byte and sets *len. Multibulk arguments point into the buf
 * of that resp_parse call, inline ones into the parser's scratch: the view is valid until the
 * next resp_parse or resp_parser_free, and, for multibulk, while the caller keeps those bytes of
 * buf where they were. The bytes are not NUL-terminated. */
const char *resp_parser_arg(const struct resp_parser *p, size_t i, size_t *len);
/* After RESP_EPROTO: the message, without "ERR " (static or in *p: valid until the parser is
 * freed). NULL when no error was reported. */
const char *resp_parser_error(const struct resp_parser *p);
/* Bytes examined over the parser's life: for tests that check the work is linear. */
uint64_t resp_parser_scanned_bytes(const struct resp_parser *p);

/* Reply writer: a growable byte buffer of replies waiting to be sent, with a cap (the client
 * output buffer limit). Bytes pending = len - head. */
#define RESP_OUT_BYTES_MAX_DEFAULT (256u * 1024 * 1024)

struct resp_out {
    char *buf;        /* cap bytes, allocated on the first write */
    size_t head;      /* first byte not yet sent */
    size_t len;       /* end of the bytes written */
    size_t cap;       /* bytes of buf */
    size_t bytes_max; /* most bytes that may be pending; a write that would exceed it fails */
    bool over;        /* a write failed on the cap (or memory): the server should close */
};

/* Initialize an empty writer whose pending bytes may not exceed bytes_max (> 0). */
void resp_out_init(struct resp_out *o, size_t bytes_max);
/* Release its buffer; *o may then be initialized again. */
void resp_out_free(struct resp_out *o);

/* Each writer appends one whole reply, or nothing: on failure it returns -ENOBUFS (the pending
 * bytes would exceed bytes_max) or -ENOMEM, leaves the pending bytes as they were and sets
 * o->over. An array header says how many replies follow; the writer does not count them. */
/* "+<s>\r\n"; CR and LF in s become spaces. */
CS_MUST_CHECK int resp_out_simple(struct resp_out *o, const char *s);
/* "-<msg>\r\n", e.g. resp_out_error(o, "ERR unknown command"); CR and LF become spaces, as
 * Redis does. */
CS_MUST_CHECK int resp_out_error(struct resp_out *o, const char *msg);
/* resp_out_error with a printf format; a message over 1023 bytes is cut there. */
CS_MUST_CHECK int resp_out_errorf(struct resp_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* ":<v>\r\n" */
CS_MUST_CHECK int resp_out_int(struct resp_out *o, long long v);
/* "$<n>\r\n<p[0..n)>\r\n": binary-safe. p may be NULL when n is 0. */
CS_MUST_CHECK int resp_out_bulk(struct resp_out *o, const void *p, size_t n);
/* Bytes that are already replies (another writer's pending bytes), appended as they are. */
CS_MUST_CHECK int resp_out_append(struct resp_out *o, const void *p, size_t n);
/* "$-1\r\n": the null bulk string. */
CS_MUST_CHECK int resp_out_null(struct resp_out *o);
/* "*-1\r\n": the null array. */
CS_MUST_CHECK int resp_out_null_array(struct resp_out *o);
/* "*<n>\r\n": an array of the n replies written next. */
CS_MUST_CHECK int resp_out_array(struct resp_out *o, size_t n);

/* The bytes waiting to be sent: returns their first and sets *len (0 when none). Valid until the
 * next write, consume or reset. */
const char *resp_out_pending(const struct resp_out *o, size_t *len);
/* The first n (<= pending) bytes were sent. */
void resp_out_consume(struct resp_out *o, size_t n);
/* Drop every pending byte and clear o->over; the buffer is kept. */
void resp_out_reset(struct resp_out *o);

#endif
