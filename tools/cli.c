/* cstore: the command-line tool of the cstore storage engine.
 *
 *   cstore [OPTIONS] COMMAND [ARGS]
 *
 * It opens the database folder (--db DIR, else $CSTORE_DB, else ./data/cstore), runs one
 * command and closes the database, so every command is durable when it returns (with the
 * default durability=sync). It uses the public API of include/cstore.h, and reads the table of
 * engine/options.h only to list the engine options in its help.
 *
 * Options (before the command):
 *   --db DIR              the database folder
 *   --config FILE         an INI file of engine options (cs_options_load); flags override it
 *   --set NAME=VALUE      any engine option by its name (cs_options_set)
 *   --NAME VALUE          the same, for any engine option of the table in engine/options.c:
 *                         --shards, --durability, ... (dashes may replace underscores:
 *                         --sync-interval-ms); --help lists them from that table
 *   -e, --escaped         KEY and VALUE arguments use the escapes of the line format below, and
 *                         `get` prints its value escaped; without it, arguments are raw bytes
 *   -h, --help, --help-options-markdown (the README's options table), --version
 *
 * Line format (scan, dump, load): one record per line, KEY<TAB>VALUE<LF>. Keys and values are
 * arbitrary bytes, so scan and dump escape five of them and load undoes it:
 *   "\\" backslash   "\t" TAB   "\n" LF   "\r" CR   "\0" NUL
 * load also accepts "\xHH" (two hex digits). Every other byte passes through unchanged, so a
 * dump loaded back (`cstore --db A dump C | cstore --db B load C -`, or through a file: one
 * database admits one process at a time) round-trips any keys and values. load refuses, naming
 * the line, a line that is empty, has no TAB or a second raw TAB, holds an unknown escape or a
 * lone trailing backslash, or whose key or value breaks the engine's limits; it never guesses.
 * Records before the bad line are already stored (load is not atomic); the message says how
 * many.
 *
 * load (its reader is tools/load.c) keeps up to LOAD_DEPTH puts in flight through a cs_session,
 * so group commit makes a durable load fast. Puts of one key reach its shard in submission
 * order, so when a file holds a key twice the later line wins.
 *
 * apply (its reader is tools/apply.c) reads lines put<TAB>COLL<TAB>KEY<TAB>VALUE and
 * del<TAB>COLL<TAB>KEY (KEY and VALUE with the escapes above) into one transaction and commits
 * it: all of the file is applied, atomically across shards, or none of it. A refused line (the
 * same rules as load, plus an unknown operation or a wrong field count), an operation over the
 * engine's or the transaction's limits (CS_EBATCH), or a failed commit (CS_ECONFLICT: retry)
 * is an error naming the line, and nothing is applied.
 *
 * Exit status:
 *   0  success
 *   1  not found: get or del of an absent key, drop of an absent collection
 *   2  usage: unknown command or option, wrong arguments, an option value or config file the
 *      engine refuses (CS_EOPTION, CS_EOPTVAL, CS_ECPUSET, CS_ESHARDS)
 *   3  any other error: the database cannot be opened (locked, not a folder, permissions), bad
 *      names, keys or values, bad load input, I/O errors
 * Every error prints one line on stderr: "cstore: <context>: <cs_strerror text>". A reader that
 * closes the output early (`cstore dump C | head`) ends the command quietly with status 3; the
 * database is still closed cleanly (SIGPIPE is ignored).
 */
#include "cstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/options.h"
#include "tools/apply.h"
#include "tools/lineformat.h"
#include "tools/load.h"

#define EXIT_NOTFOUND 1
#define EXIT_USAGE 2
#define EXIT_ERROR 3

#define CLI_DB_DEFAULT "./data/cstore"
#define CLI_OPT_NAME_MAX 64u                    /* bytes in an engine option name */
#define LOAD_PROGRESS_NS (500u * 1000u * 1000u) /* progress line period on a terminal */

#define cli_assert(e) ((e) ? (void)0 : cli_panic(__FILE__, __LINE__, #e))

/* One engine option given on the command line, applied after --config so flags win. */
struct cli_opt {
    char name[CLI_OPT_NAME_MAX + 1]; /* engine option name, NUL-terminated */
    const char *value;               /* borrowed from argv */
    const char *flag;                /* the argument it came from, for messages */
};

struct cli {
    const char *db_path;     /* database folder */
    const char *config_path; /* --config FILE, or NULL */
    int escaped;             /* -e: arguments and get output use the line-format escapes */
    struct cli_opt *opts;    /* engine options from flags, in order */
    unsigned opt_count;      /* entries used in opts */
    cs_db *db;               /* open database, or NULL */
};

/* How a command wants the database: it may create it, or it needs one that exists. */
enum cli_open_mode { CLI_OPEN_CREATE, CLI_OPEN_EXISTING };

struct cli_command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv); /* argv[0] is the command name */
    int args_min;                                       /* arguments after the name */
    int args_max;                                       /* -1: checked by run */
    const char *usage;
};

static void cli_panic(const char *file, int line, const char *expr)
{
    fprintf(stderr, "cstore: internal error at %s:%d: %s\n", file, line, expr);
    abort();
}

/* The usage text: cli_usage_text, the engine options of the options table, cli_usage_tail. */
static const char cli_usage_text[] =
    "usage: cstore [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  put COLL KEY VALUE [--ttl-ms N]\n"
    "                            store a record (creates the collection); --ttl-ms: it\n"
    "                            expires N milliseconds from now (else it never does)\n"
    "  get COLL KEY              print the value and a newline\n"
    "  ttl COLL KEY              print the milliseconds left before the record expires,\n"
    "                            -1 when it has no expiry\n"
    "  del COLL KEY              delete a record\n"
    "  scan COLL [--from K] [--to K] [--limit N]\n"
    "                            print KEY<TAB>VALUE lines in key order; --from is\n"
    "                            inclusive, --to exclusive\n"
    "  dump COLL                 print every record as KEY<TAB>VALUE lines\n"
    "  load COLL FILE|-          store KEY<TAB>VALUE lines from FILE or stdin\n"
    "  apply FILE|-              apply put<TAB>COLL<TAB>KEY<TAB>VALUE and del<TAB>COLL<TAB>KEY\n"
    "                            lines from FILE or stdin as one transaction: all or nothing\n"
    "  watch COLL|- [--from TOKEN] [--follow]\n"
    "                            print the committed writes of COLL (-: all) from the log as\n"
    "                            apply lines, from TOKEN or the start; stderr gets the position\n"
    "                            to resume from; --follow waits for more until interrupted\n"
    "  collections               list collection names\n"
    "  create COLL               create an empty collection\n"
    "  drop COLL                 delete a collection and its records\n"
    "  stat [--prometheus]       per-shard statistics and latency percentiles since\n"
    "                            this open; --prometheus: every metric in the\n"
    "                            Prometheus text format (cs_metrics_prometheus)\n"
    "  checkpoint                write every shard's trees to a checkpoint and drop\n"
    "                            the WAL it covers (faster reopen)\n"
    "  verify                    check every checksum and tree invariant of a closed\n"
    "                            database without changing it; exit 3 on damage\n"
    "  salvage                   open cutting the WAL or checkpoint at the first damage,\n"
    "                            report what was dropped, write a fresh checkpoint\n"
    "  backup DIR                write a consistent copy of the database into DIR (absent\n"
    "                            or empty) while it serves: a fresh checkpoint per shard\n"
    "                            and the WAL after it, hard-linked where possible\n"
    "  help                      this text\n"
    "\n"
    "Options (before COMMAND):\n"
    "  --db DIR                  database folder (default $CSTORE_DB, else ./data/cstore)\n"
    "  --config FILE             INI file of engine options; flags override it\n"
    "  --set NAME=VALUE          any engine option below; --NAME VALUE and\n"
    "                            --NAME=VALUE work too, with - or _ in NAME\n"
    "  -e, --escaped             KEY/VALUE arguments use the escapes below and get\n"
    "                            prints its value escaped (default: raw bytes)\n"
    "  -h, --help                this text\n"
    "  --help-options-markdown   the engine options as a markdown table\n"
    "  --version                 print the version\n"
    "\n"
    "Engine options (engine/options.c; sizes take K, M, G):\n";

/* Printed after the engine options of cli_usage_text. */
static const char cli_usage_tail[] =
    "\n"
    "Line format: scan and dump write, and load reads, one KEY<TAB>VALUE line per\n"
    "record. Inside keys and values, backslash, TAB, LF, CR and NUL are written as\n"
    "\\\\ \\t \\n \\r \\0; load also reads \\xHH. So a dump loaded back round-trips\n"
    "any bytes (one database admits one process at a time: dump to a file, or pipe\n"
    "between two databases). load refuses, naming the line, a line without TAB,\n"
    "with a second raw TAB, or with a bad escape. apply uses the same escapes in\n"
    "KEY and VALUE and refuses a bad line, an over-limit transaction or a conflict\n"
    "with nothing applied.\n"
    "\n"
    "Exit status: 0 ok, 1 not found, 2 usage or option error, 3 other error.\n";

static void cli_usage(FILE *f)
{
    fputs(cli_usage_text, f);
    options_write_help(f);
    fputs(cli_usage_tail, f);
}

/* ---- Error reporting ---- */

/* Map an API return code to the exit status documented at the top of this file. */
static int cli_exit_code(int rc)
{
    cli_assert(rc != 0);
    switch (rc) {
    case CS_ENOTFOUND:
        return EXIT_NOTFOUND;
    case CS_EOPTION:
    case CS_EOPTVAL:
    case CS_ECPUSET:
    case CS_ESHARDS:
        return EXIT_USAGE;
    default:
        return EXIT_ERROR;
    }
}

/* Extra advice for the errors where cs_strerror() alone does not say what to do. */
static const char *cli_hint(int rc)
{
    switch (rc) {
    case CS_ESHARDS:
        return " (open it with the --shards it was created with)";
    case CS_ELOCKED:
        return " (another process has it open)";
    case CS_ECPUSET:
        return " (see --cpuset and --shards; shards cannot exceed the CPUs of the cpuset)";
    default:
        return "";
    }
}

/* Print "cstore: <context>: <error>" on stderr and return the exit status for rc. */
__attribute__((format(printf, 2, 3))) static int cli_fail(int rc, const char *fmt, ...)
{
    va_list ap;
    fputs("cstore: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s%s\n", cs_strerror(rc), cli_hint(rc));
    return cli_exit_code(rc);
}

/* Print a usage error on stderr and return EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) static int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("cstore: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see 'cstore help')\n", stderr);
    return EXIT_USAGE;
}

/* A key or value argument: raw bytes, or unescaped with -e (then copied into *owned). */
struct cli_bytes {
    const char *p; /* the bytes */
    size_t len;    /* their count */
    char *owned;   /* malloc'ed copy to free, or NULL */
};

__attribute__((warn_unused_result)) static int
cli_arg_bytes(const struct cli *cli, const char *what, const char *arg, struct cli_bytes *out)
{
    size_t n = strlen(arg);
    out->p = arg;
    out->len = n;
    out->owned = NULL;
    if (!cli->escaped)
        return 0;
    out->owned = malloc(n + 1);
    if (out->owned == NULL)
        return cli_fail(-ENOMEM, "%s", what);
    const char *bad = lineformat_unescape(arg, n, out->owned, &out->len);
    if (bad != NULL) {
        free(out->owned);
        out->owned = NULL;
        fprintf(stderr, "cstore: %s '%s': %s\n", what, arg, bad);
        return EXIT_USAGE;
    }
    out->p = out->owned;
    return 0;
}

/* ---- Options and opening ---- */

/* Parse a whole decimal number without sign; 0 on success. */
static int cli_parse_u64(const char *s, unsigned long long *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Build the engine options: the config file first, then every flag in order. */
__attribute__((warn_unused_result)) static int cli_options_build(const struct cli *cli,
                                                                 cs_options **out)
{
    cs_options *o = cs_options_new();
    if (o == NULL)
        return cli_fail(-ENOMEM, "options");
    if (cli->config_path != NULL) {
        int line = 0;
        int rc = cs_options_load(o, cli->config_path, &line);
        if (rc != 0) {
            cs_options_free(o);
            if (line > 0)
                cli_fail(rc, "--config %s: line %d", cli->config_path, line);
            else
                cli_fail(rc, "--config %s", cli->config_path);
            return EXIT_USAGE;
        }
    }
    for (unsigned i = 0; i < cli->opt_count; i++) {
        const struct cli_opt *opt = &cli->opts[i];
        int rc = cs_options_set(o, opt->name, opt->value);
        if (rc != 0) {
            cs_options_free(o);
            if (rc == CS_EOPTION)
                return cli_usage_error("unknown option '%s'", opt->flag);
            cli_fail(rc, "%s '%s'", opt->flag, opt->value);
            return EXIT_USAGE;
        }
    }
    *out = o;
    return 0;
}

/* mkdir -p of the folders above path, so that the default ./data/cstore works at once. An
 * error is left for cs_open to report with its own code. */
static void cli_make_parents(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return;
    memcpy(buf, path, n + 1);
    while (n > 1 && buf[n - 1] == '/') /* ignore trailing slashes */
        buf[--n] = '\0';
    char *last = strrchr(buf, '/');
    if (last == NULL || last == buf)
        return;
    *last = '\0';
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return;
        *p = '/';
    }
    (void)(mkdir(buf, 0777) != 0);
}

/* Open cli->db_path with the options of the command line. CLI_OPEN_EXISTING refuses to create
 * a database where there is none (a read of a mistyped path should not leave a folder). */
__attribute__((warn_unused_result)) static int cli_open(struct cli *cli, enum cli_open_mode mode)
{
    cli_assert(cli->db == NULL);
    struct stat st;
    if (stat(cli->db_path, &st) != 0) {
        if (errno != ENOENT)
            return cli_fail(-errno, "cannot open database '%s'", cli->db_path);
        if (mode == CLI_OPEN_EXISTING) {
            fprintf(stderr, "cstore: no database at '%s' (put, load or create make one)\n",
                    cli->db_path);
            return EXIT_ERROR;
        }
        cli_make_parents(cli->db_path);
    }
    cs_options *o = NULL;
    int ex = cli_options_build(cli, &o);
    if (ex != 0)
        return ex;
    int rc = cs_open(cli->db_path, o, &cli->db);
    cs_options_free(o);
    if (rc != 0) {
        cli->db = NULL;
        const char *detail = cs_last_error();
        if (detail != NULL && detail[0] != '\0')
            return cli_fail(rc, "cannot open database '%s' (%s)", cli->db_path, detail);
        return cli_fail(rc, "cannot open database '%s'", cli->db_path);
    }
    cli_assert(cli->db != NULL);
    return 0;
}

/* ---- Commands ---- */

static int cmd_put(struct cli *cli, int argc, char **argv)
{
    unsigned long long ttl_ms = 0;
    if (argc != 4 && (argc != 6 || strcmp(argv[4], "--ttl-ms") != 0))
        return cli_usage_error("usage: cstore put COLL KEY VALUE [--ttl-ms N]");
    if (argc == 6 &&
        (cli_parse_u64(argv[5], &ttl_ms) != 0 || ttl_ms == 0 || ttl_ms > CS_EXPIRE_MAX_MS))
        return cli_usage_error("put: --ttl-ms '%s' is not a count of milliseconds above 0",
                               argv[5]);
    struct cli_bytes key, val;
    int ex = cli_arg_bytes(cli, "key", argv[2], &key);
    if (ex != 0)
        return ex;
    ex = cli_arg_bytes(cli, "value", argv[3], &val);
    if (ex == 0)
        ex = cli_open(cli, CLI_OPEN_CREATE);
    if (ex == 0) {
        uint64_t at_ms = ttl_ms ? cs_clock_ms() + ttl_ms : 0;
        int rc = at_ms > CS_EXPIRE_MAX_MS
                     ? CS_EINVAL
                     : cs_put_ttl(cli->db, argv[1], key.p, key.len, val.p, val.len, at_ms);
        if (rc != 0)
            ex = cli_fail(rc, "put %s (key %zu bytes, value %zu bytes)", argv[1], key.len, val.len);
    }
    free(key.owned);
    free(val.owned);
    return ex;
}

/* get and del: parse the key argument argv[2] into *key (free key->owned after, whatever the
 * result) and open the existing database. */
static int cli_key_open(struct cli *cli, char **argv, struct cli_bytes *key)
{
    int ex = cli_arg_bytes(cli, "key", argv[2], key);
    if (ex == 0)
        ex = cli_open(cli, CLI_OPEN_EXISTING);
    return ex;
}

/* The exit status of a get or del (verb) of key argv[2] in collection argv[1] that returned rc:
 * an absent key is EXIT_NOTFOUND, with a message naming the key as it was given. */
static int cli_key_status(int rc, const char *verb, char **argv, size_t klen)
{
    if (rc == CS_ENOTFOUND) {
        fprintf(stderr, "cstore: %s %s %s: not found\n", verb, argv[1], argv[2]);
        return EXIT_NOTFOUND;
    }
    if (rc != 0)
        return cli_fail(rc, "%s %s (key %zu bytes)", verb, argv[1], klen);
    return 0;
}

static int cmd_get(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    struct cli_bytes key;
    int ex = cli_key_open(cli, argv, &key);
    if (ex == 0) {
        void *val = NULL;
        size_t vlen = 0;
        ex = cli_key_status(cs_get(cli->db, argv[1], key.p, key.len, &val, &vlen), "get", argv,
                            key.len);
        if (ex == 0) {
            if (cli->escaped)
                lineformat_write_escaped(stdout, val, vlen);
            else if (vlen > 0) /* val is NULL for an empty value */
                fwrite(val, 1, vlen, stdout);
            putchar('\n');
            cs_free(val);
        }
    }
    free(key.owned);
    return ex;
}

static int cmd_ttl(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    struct cli_bytes key;
    int ex = cli_key_open(cli, argv, &key);
    if (ex == 0) {
        uint64_t at_ms = 0;
        ex = cli_key_status(cs_get_expiry(cli->db, argv[1], key.p, key.len, &at_ms), "ttl", argv,
                            key.len);
        if (ex == 0) {
            uint64_t now_ms = cs_clock_ms();
            if (at_ms == 0)
                printf("-1\n");
            else
                printf("%llu\n", (unsigned long long)(at_ms > now_ms ? at_ms - now_ms : 0));
        }
    }
    free(key.owned);
    return ex;
}

static int cmd_del(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    struct cli_bytes key;
    int ex = cli_key_open(cli, argv, &key);
    if (ex == 0)
        ex = cli_key_status(cs_del(cli->db, argv[1], key.p, key.len), "del", argv, key.len);
    free(key.owned);
    return ex;
}

/* memcmp order with the shorter key first on a common prefix: the engine's key order. */
static int cli_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

struct cli_scan {
    const struct cli_bytes *from; /* first key (inclusive), or NULL */
    const struct cli_bytes *to;   /* end key (exclusive), or NULL */
    unsigned long long limit;     /* records to print at most */
};

/* Print the records of coll within the bounds of sc as escaped KEY<TAB>VALUE lines. */
static int cli_scan_print(struct cli *cli, const char *coll, const struct cli_scan *sc)
{
    cs_cursor *c = NULL;
    int rc = cs_cursor_open(cli->db, coll, &c);
    if (rc != 0)
        return cli_fail(rc, "scan %s", coll);
    if (sc->from != NULL && sc->from->len > 0) { /* an empty --from is the start */
        rc = cs_cursor_seek(c, sc->from->p, sc->from->len);
        if (rc != 0 && rc != CS_ENOTFOUND) {
            cs_cursor_close(c);
            return cli_fail(rc, "scan %s --from (%zu bytes)", coll, sc->from->len);
        }
    } else {
        rc = cs_cursor_first(c);
    }
    unsigned long long printed = 0;
    while (rc == 0 && printed < sc->limit) {
        const void *k, *v;
        size_t klen, vlen;
        rc = cs_cursor_key(c, &k, &klen);
        if (rc == 0)
            rc = cs_cursor_value(c, &v, &vlen);
        if (rc != 0)
            break;
        if (sc->to != NULL && cli_key_cmp(k, klen, sc->to->p, sc->to->len) >= 0)
            break;
        lineformat_write_escaped(stdout, k, klen);
        putchar('\t');
        lineformat_write_escaped(stdout, v, vlen);
        putchar('\n');
        printed++;
        if (ferror(stdout))
            break; /* the reader is gone; main reports it */
        rc = cs_cursor_next(c);
    }
    cs_cursor_close(c);
    if (rc != 0 && rc != CS_ENOTFOUND)
        return cli_fail(rc, "scan %s after %llu records", coll, printed);
    return 0;
}

static int cmd_scan(struct cli *cli, int argc, char **argv)
{
    const char *from_arg = NULL, *to_arg = NULL;
    struct cli_scan sc = {.from = NULL, .to = NULL, .limit = ULLONG_MAX};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        const char *val = NULL;
        size_t nlen = strcspn(a, "=");
        if (strncmp(a, "--from", nlen) == 0 && nlen == 6)
            dst = &from_arg;
        else if (strncmp(a, "--to", nlen) == 0 && nlen == 4)
            dst = &to_arg;
        else if (!(strncmp(a, "--limit", nlen) == 0 && nlen == 7))
            return cli_usage_error("scan: unknown argument '%s'", a);
        if (a[nlen] == '=')
            val = a + nlen + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return cli_usage_error("scan: %s needs a value", a);
        if (dst != NULL) {
            *dst = val;
        } else if (cli_parse_u64(val, &sc.limit) != 0) {
            return cli_usage_error("scan: --limit '%s' is not a count", val);
        }
    }
    struct cli_bytes from = {0}, to = {0};
    int ex = 0;
    if (from_arg != NULL) {
        ex = cli_arg_bytes(cli, "--from", from_arg, &from);
        sc.from = &from;
    }
    if (ex == 0 && to_arg != NULL) {
        ex = cli_arg_bytes(cli, "--to", to_arg, &to);
        sc.to = &to;
    }
    if (ex == 0)
        ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex == 0)
        ex = cli_scan_print(cli, argv[1], &sc);
    free(from.owned);
    free(to.owned);
    return ex;
}

static int cmd_dump(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    struct cli_scan sc = {.from = NULL, .to = NULL, .limit = ULLONG_MAX};
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex == 0)
        ex = cli_scan_print(cli, argv[1], &sc);
    return ex;
}

/* ---- load (the reader is tools/load.c) ---- */

/* Set by SIGINT/SIGTERM during load: stop reading, drain what is in flight, close cleanly. */
static volatile sig_atomic_t cli_interrupted;

static void load_on_signal(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

/* The progress line of a load on a terminal. */
struct cli_progress {
    uint64_t started_ns; /* when the load began */
    uint64_t printed_ns; /* when progress was last printed */
};

static uint64_t cli_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void cli_progress_print(struct cli_progress *p, unsigned long long loaded, int final)
{
    uint64_t now = cli_now_ns();
    if (!final && now - p->printed_ns < LOAD_PROGRESS_NS)
        return;
    p->printed_ns = now;
    double secs = (double)(now - p->started_ns) / 1e9;
    fprintf(stderr, "\rcstore: loaded %llu records (%.0f/s)%s", loaded,
            secs > 0 ? (double)loaded / secs : 0.0, final ? "\n" : "");
}

static void cli_progress(void *arg, unsigned long long loaded)
{
    cli_progress_print(arg, loaded, 0);
}

/* Print why a load stopped early; returns the exit status. */
static int cli_load_report(const struct load_result *res, const char *input_name)
{
    switch (res->stop) {
    case LOAD_END:
        return 0;
    case LOAD_BAD_LINE:
        fprintf(stderr, "cstore: load %s: line %llu: %s%s%s\n", input_name, res->line_no,
                res->field ? res->field : "", res->field ? ": " : "", res->reason);
        return EXIT_ERROR;
    case LOAD_TOO_LONG:
        fprintf(stderr, "cstore: load %s: line %llu: longer than %u bytes\n", input_name,
                res->line_no, LOAD_LINE_BYTES_MAX);
        return EXIT_ERROR;
    case LOAD_INTERRUPTED:
        fprintf(stderr, "cstore: load %s: interrupted after line %llu\n", input_name, res->line_no);
        return EXIT_ERROR;
    case LOAD_READ_FAILED:
        return cli_fail(res->rc, "load: reading %s after line %llu", input_name, res->line_no);
    case LOAD_PUT_FAILED:
        return cli_fail(res->rc, "load %s: line %llu", input_name, res->line_no);
    }
    cli_assert(!"unknown load result");
    return EXIT_ERROR;
}

static int cmd_load(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    const char *path = argv[2];
    int from_stdin = strcmp(path, "-") == 0;
    const char *input_name = from_stdin ? "stdin" : path;
    struct stat st;
    /* Check the input before opening (and perhaps creating) the database, but open it after:
     * opening a FIFO waits for a writer. */
    if (!from_stdin && stat(path, &st) != 0)
        return cli_fail(-errno, "load: %s", path);
    int ex = cli_open(cli, CLI_OPEN_CREATE);
    if (ex != 0)
        return ex;
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail(-errno, "load: %s", path);

    struct cli_progress progress = {.started_ns = cli_now_ns()};
    progress.printed_ns = progress.started_ns;
    int on_terminal = isatty(STDERR_FILENO);
    struct load_config cfg = {
        .db = cli->db,
        .coll = argv[1],
        .fd = fd,
        .stop = &cli_interrupted,
        .progress = on_terminal ? cli_progress : NULL,
        .progress_arg = &progress,
    };
    struct sigaction sa = {.sa_handler = load_on_signal}; /* no SA_RESTART: read(2) returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct load_result res;
    int rc = load_run(&cfg, &res);
    if (!from_stdin)
        close(fd);
    if (rc != 0)
        return cli_fail(rc, "load");
    if (on_terminal)
        cli_progress_print(&progress, res.loaded, 1);
    ex = cli_load_report(&res, input_name);
    if (ex == 0)
        printf("loaded %llu record%s into %s\n", res.loaded, res.loaded == 1 ? "" : "s", cfg.coll);
    else
        fprintf(stderr, "cstore: load %s: %llu record%s loaded before the error\n", input_name,
                res.loaded, res.loaded == 1 ? "" : "s");
    return ex;
}

/* ---- apply (the reader is tools/apply.c) ---- */

/* Print how an apply ended; returns the exit status. */
static int cli_apply_report(const struct apply_result *res, const char *input_name)
{
    switch (res->stop) {
    case APPLY_COMMITTED:
        printf("applied %llu put%s and %llu delete%s in one transaction (%u shard%s)\n", res->puts,
               res->puts == 1 ? "" : "s", res->dels, res->dels == 1 ? "" : "s", res->shards,
               res->shards == 1 ? "" : "s");
        return 0;
    case APPLY_BAD_LINE:
        fprintf(stderr, "cstore: apply %s: line %llu: %s%s%s; nothing applied\n", input_name,
                res->line_no, res->field ? res->field : "", res->field ? ": " : "", res->reason);
        return EXIT_ERROR;
    case APPLY_TOO_LONG:
        fprintf(stderr, "cstore: apply %s: line %llu: longer than %u bytes; nothing applied\n",
                input_name, res->line_no, LOAD_LINE_BYTES_MAX);
        return EXIT_ERROR;
    case APPLY_READ_FAILED:
        return cli_fail(res->rc, "apply: reading %s after line %llu (nothing applied)", input_name,
                        res->line_no);
    case APPLY_OP_FAILED:
        if (res->rc == CS_EBATCH)
            return cli_fail(res->rc,
                            "apply %s: line %llu: over the transaction's limits (%u operations, "
                            "%u key and value bytes; nothing applied)",
                            input_name, res->line_no, CS_TXN_OPS_MAX, CS_TXN_BYTES_MAX);
        return cli_fail(res->rc, "apply %s: line %llu (nothing applied)", input_name, res->line_no);
    case APPLY_COMMIT_FAILED:
        if (res->rc == CS_ECONFLICT)
            return cli_fail(res->rc,
                            "apply %s: commit of %llu lines refused: another transaction holds "
                            "one of its keys (nothing applied; run it again)",
                            input_name, res->line_no);
        return cli_fail(res->rc, "apply %s: commit of %llu lines (nothing applied)", input_name,
                        res->line_no);
    }
    cli_assert(!"unknown apply result");
    return EXIT_ERROR;
}

static int cmd_apply(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    const char *path = argv[1];
    int from_stdin = strcmp(path, "-") == 0;
    const char *input_name = from_stdin ? "stdin" : path;
    struct stat st;
    /* As load: check the input before opening (and perhaps creating) the database, open the
     * input after it (a FIFO waits for a writer). */
    if (!from_stdin && stat(path, &st) != 0)
        return cli_fail(-errno, "apply: %s", path);
    int ex = cli_open(cli, CLI_OPEN_CREATE);
    if (ex != 0)
        return ex;
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail(-errno, "apply: %s", path);
    struct apply_result res;
    int rc = apply_run(cli->db, fd, &res);
    if (!from_stdin)
        close(fd);
    if (rc != 0)
        return cli_fail(rc, "apply (nothing applied)");
    return cli_apply_report(&res, input_name);
}

/* ---- watch (the change feed) ---- */

/* Print the committed writes of COLL ("-": every collection) from the log, as apply's lines
 * (put COLL KEY VALUE / del COLL KEY, TAB-separated, load's escapes), from --from TOKEN or the
 * start of the log, to its end; with --follow, then wait for more until SIGINT/SIGTERM. The
 * position after the last event goes to stderr ("position TOKEN"), for the next --from. */
static int cmd_watch(struct cli *cli, int argc, char **argv)
{
    const char *from = NULL;
    bool follow = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0)
            follow = true;
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strncmp(argv[i], "--from=", 7) == 0)
            from = argv[i] + 7;
        else
            return cli_usage_error("watch: unknown argument '%s'", argv[i]);
    }
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    char start[64];
    if (!from) { /* the start of every shard's log */
        int len = snprintf(start, sizeof(start), "cs1.%x", cs_shard_count(cli->db));
        for (unsigned s = 0; s < cs_shard_count(cli->db) && len < (int)sizeof(start) - 8; s++)
            len += snprintf(start + len, sizeof(start) - (size_t)len, ".0-0");
        from = cs_shard_count(cli->db) <= 8 ? start : NULL;
    }
    cs_feed *f = NULL;
    const char *coll = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
    int rc = cs_feed_open(cli->db, coll, from, &f);
    if (rc == CS_ENOTFOUND)
        return cli_fail(rc, "watch: the log no longer holds that position (a checkpoint removed "
                            "it); start from a later --from");
    if (rc)
        return cli_fail(rc, "watch");
    signal(SIGINT, load_on_signal);
    signal(SIGTERM, load_on_signal);
    char *last = NULL;
    for (;;) {
        struct cs_feed_event ev;
        rc = cs_feed_next(f, &ev, follow ? 200 : 0);
        if (rc == CS_ENOTFOUND && follow && !cli_interrupted)
            continue;
        if (rc)
            break;
        fputs(ev.deleted ? "del\t" : "put\t", stdout);
        fputs(ev.coll, stdout);
        putchar('\t');
        lineformat_write_escaped(stdout, ev.key, ev.klen);
        if (!ev.deleted) {
            putchar('\t');
            lineformat_write_escaped(stdout, ev.val, ev.vlen);
        }
        putchar('\n');
        free(last);
        last = strdup(ev.position);
    }
    cs_feed_close(f);
    if (rc != CS_ENOTFOUND) {
        free(last);
        return cli_fail(rc, "watch");
    }
    if (last)
        fprintf(stderr, "position %s\n", last);
    free(last);
    return 0;
}

/* ---- Catalog and statistics ---- */

static int cmd_collections(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    char **names = NULL;
    size_t count = 0;
    int rc = cs_collection_list(cli->db, &names, &count);
    if (rc != 0)
        return cli_fail(rc, "collections");
    for (size_t i = 0; i < count; i++)
        puts(names[i]);
    cs_free(names);
    return 0;
}

static int cmd_create(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    int ex = cli_open(cli, CLI_OPEN_CREATE);
    if (ex != 0)
        return ex;
    int rc = cs_collection_create(cli->db, argv[1]);
    return rc != 0 ? cli_fail(rc, "create '%s'", argv[1]) : 0;
}

static int cmd_drop(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    int rc = cs_collection_drop(cli->db, argv[1]);
    return rc != 0 ? cli_fail(rc, "drop '%s'", argv[1]) : 0;
}

/* One column of the stat tables: a header and a uint64_t field of struct cs_shard_stats. */
struct stat_col {
    const char *name;
    size_t offset; /* of the field in struct cs_shard_stats */
    int summed;    /* the total row adds the shards up (else it shows the largest) */
};

#define SS_OFF(field) offsetof(struct cs_shard_stats, field)

static const struct stat_col stat_cols_ops[] = {
    {"records", SS_OFF(records), 1},     {"colls", SS_OFF(collections), 0},
    {"puts", SS_OFF(puts), 1},           {"gets", SS_OFF(gets), 1},
    {"dels", SS_OFF(dels), 1},           {"batches", SS_OFF(batches), 1},
    {"scans", SS_OFF(scans), 1},         {"views", SS_OFF(views), 1},
    {"loops", SS_OFF(loops), 1},         {"tree_bytes", SS_OFF(tree_bytes), 1},
    {"view_gets", SS_OFF(view_gets), 1},
};

static const struct stat_col stat_cols_wal[] = {
    {"frames", SS_OFF(wal_frames), 1},     {"records", SS_OFF(wal_records), 1},
    {"bytes", SS_OFF(wal_bytes), 1},       {"syncs", SS_OFF(wal_syncs), 1},
    {"lsn", SS_OFF(wal_lsn), 0},           {"durable_lsn", SS_OFF(wal_durable_lsn), 0},
    {"segments", SS_OFF(wal_segments), 1}, {"enospc", SS_OFF(wal_enospc), 1},
};

/* txn_commits counts each participant of a cross-shard commit, so the total row counts such a
 * transaction once per shard it touched; cross_commits counts it once, on its first shard. */
static const struct stat_col stat_cols_txn[] = {
    {"commits", SS_OFF(txn_commits), 1},
    {"conflicts", SS_OFF(txn_conflicts), 1},
    {"cross_commits", SS_OFF(txn_cross_commits), 1},
};

static const struct stat_col stat_cols_recovery[] = {
    {"recovered", SS_OFF(recovered_records), 1},    {"recovery_us", SS_OFF(recovery_us), 0},
    {"torn_bytes", SS_OFF(recovery_torn_bytes), 1}, {"checkpoints", SS_OFF(checkpoints), 1},
    {"checkpoint_lsn", SS_OFF(checkpoint_lsn), 0},
};

#define STAT_COLS_MAX 12u

static uint64_t stat_field(const struct cs_shard_stats *s, const struct stat_col *c)
{
    uint64_t v;
    memcpy(&v, (const char *)s + c->offset, sizeof(v));
    return v;
}

static int stat_digits(uint64_t v)
{
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Print one table: a row per shard (shard, cpu, then cols) and a total row ("max" for the
 * columns that do not add up: LSNs, per-shard collection counts, recovery time). */
static void stat_table(const char *title, const struct cs_shard_stats *st, unsigned count,
                       const struct stat_col *cols, unsigned ncols)
{
    cli_assert(ncols <= STAT_COLS_MAX);
    int width[STAT_COLS_MAX];
    uint64_t total[STAT_COLS_MAX];
    for (unsigned j = 0; j < ncols; j++) {
        total[j] = 0;
        for (unsigned i = 0; i < count; i++) {
            uint64_t v = stat_field(&st[i], &cols[j]);
            if (cols[j].summed)
                total[j] += v;
            else if (v > total[j])
                total[j] = v;
        }
        int w = (int)strlen(cols[j].name);
        int d = stat_digits(total[j]);
        width[j] = d > w ? d : w;
    }
    printf("%s\n%5s %4s", title, "shard", "cpu");
    for (unsigned j = 0; j < ncols; j++)
        printf(" %*s", width[j], cols[j].name);
    putchar('\n');
    for (unsigned i = 0; i < count; i++) {
        printf("%5u %4d", st[i].shard, st[i].cpu);
        for (unsigned j = 0; j < ncols; j++)
            printf(" %*llu", width[j], (unsigned long long)stat_field(&st[i], &cols[j]));
        putchar('\n');
    }
    printf("%5s %4s", "total", "");
    for (unsigned j = 0; j < ncols; j++)
        printf(" %*llu", width[j], (unsigned long long)total[j]);
    putchar('\n');
}

/* The latency histograms that plain `stat` summarizes, with their column titles. */
static const struct {
    unsigned metric; /* enum cs_metric */
    const char *name;
} stat_lat[] = {
    {CS_METRIC_PUT, "put"},
    {CS_METRIC_GET, "get"},
    {CS_METRIC_VIEW_GET, "view_get"},
    {CS_METRIC_WAL_SYNC, "fdatasync"},
};

/* A latency in ns as microseconds with one decimal ("-" when nothing was recorded). */
static void stat_us(char *buf, size_t size, uint64_t count, uint64_t ns)
{
    if (count == 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.1f", (double)ns / 1000.0);
}

/* Per shard, a row per histogram of stat_lat: its count and p50/p99/p999 in microseconds. */
static int stat_latencies(struct cli *cli, unsigned count)
{
    printf("\nlatency since this open, in us (a percentile is at most 6.25%% above the true "
           "value;\nput, get: from queueing to the shard to completion; view_get: answered by "
           "the\ncalling thread from a published view, one in 16 timed; fdatasync: a WAL frame's "
           "durable\nwrite)\n");
    printf("%5s %-9s %10s %10s %10s %10s\n", "shard", "op", "count", "p50_us", "p99_us", "p999_us");
    for (unsigned i = 0; i < count; i++)
        for (size_t j = 0; j < sizeof(stat_lat) / sizeof(stat_lat[0]); j++) {
            struct cs_metric_summary s;
            int rc = cs_metrics_summary(cli->db, i, stat_lat[j].metric, &s);
            if (rc != 0)
                return cli_fail(rc, "stat: latencies of shard %u", i);
            char p50[32], p99[32], p999[32];
            stat_us(p50, sizeof(p50), s.count, s.p50);
            stat_us(p99, sizeof(p99), s.count, s.p99);
            stat_us(p999, sizeof(p999), s.count, s.p999);
            printf("%5u %-9s %10llu %10s %10s %10s\n", i, stat_lat[j].name,
                   (unsigned long long)s.count, p50, p99, p999);
        }
    return 0;
}

/* stat --prometheus: the exporter's text as it is. */
static int stat_prometheus(struct cli *cli)
{
    char *text = NULL;
    size_t len = 0;
    int rc = cs_metrics_prometheus(cli->db, &text, &len);
    if (rc != 0)
        return cli_fail(rc, "stat --prometheus");
    (void)fwrite(text, 1, len, stdout); /* main reports a failed output */
    cs_free(text);
    return 0;
}

static int cmd_stat(struct cli *cli, int argc, char **argv)
{
    bool prometheus = argc == 2 && strcmp(argv[1], "--prometheus") == 0;
    if (argc == 2 && !prometheus)
        return cli_usage_error("stat: unknown argument '%s'", argv[1]);
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    if (prometheus)
        return stat_prometheus(cli);
    unsigned count = cs_shard_count(cli->db);
    cli_assert(count >= 1);
    cli_assert(count <= CS_SHARDS_MAX);
    struct cs_shard_stats *st = calloc(count, sizeof(*st));
    if (st == NULL)
        return cli_fail(-ENOMEM, "stat");
    for (unsigned i = 0; i < count; i++) {
        int rc = cs_stats(cli->db, i, &st[i]);
        if (rc != 0) {
            free(st);
            return cli_fail(rc, "stat: shard %u", i);
        }
    }
    printf("database %s: %u shards; counters count since this open; the total row adds the\n"
           "shards up, except colls, LSNs and recovery_us: their largest value\n\n",
           cli->db_path, count);
    stat_table("records and requests", st, count, stat_cols_ops,
               sizeof(stat_cols_ops) / sizeof(stat_cols_ops[0]));
    putchar('\n');
    stat_table("write-ahead log", st, count, stat_cols_wal,
               sizeof(stat_cols_wal) / sizeof(stat_cols_wal[0]));
    putchar('\n');
    stat_table("recovery at this open, checkpoints", st, count, stat_cols_recovery,
               sizeof(stat_cols_recovery) / sizeof(stat_cols_recovery[0]));
    putchar('\n');
    stat_table("transactions (a cross-shard one counts on each shard it touched)", st, count,
               stat_cols_txn, sizeof(stat_cols_txn) / sizeof(stat_cols_txn[0]));
    for (unsigned i = 0; i < count; i++)
        if (st[i].io_error != 0)
            printf("shard %u is read-only after an I/O error: %s\n", i,
                   cs_strerror(st[i].io_error));
    free(st);
    return stat_latencies(cli, count);
}

static int cmd_checkpoint(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    int rc = cs_checkpoint(cli->db);
    return rc != 0 ? cli_fail(rc, "checkpoint") : 0;
}

/* verify: check a closed database without changing it (cs_verify). Exit 0 when sound, 3 when
 * damaged (the report names the first problem). */
static int cmd_verify(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct stat st;
    if (stat(cli->db_path, &st) != 0) {
        fprintf(stderr, "cstore: no database at '%s'\n", cli->db_path);
        return EXIT_ERROR;
    }
    cs_options *o = NULL;
    int ex = cli_options_build(cli, &o);
    if (ex != 0)
        return ex;
    char *report = NULL;
    int rc = cs_verify(cli->db_path, o, &report);
    cs_options_free(o);
    if (report != NULL)
        fputs(report, stdout);
    cs_free(report);
    if (rc != 0) {
        const char *detail = cs_last_error();
        return cli_fail(rc, "verify '%s'%s%s", cli->db_path, detail[0] ? ": " : "", detail);
    }
    printf("verify: every checksum and every tree invariant holds\n");
    return 0;
}

/* salvage: open with salvage=true (recovery cuts at the first damage and reports on stderr what
 * it dropped, and a fresh checkpoint replaces a damaged one), then close. */
static int cmd_salvage(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct cli_opt *opt = &cli->opts[cli->opt_count++];
    snprintf(opt->name, sizeof(opt->name), "salvage");
    opt->value = "true";
    opt->flag = "salvage";
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    unsigned count = cs_shard_count(cli->db);
    uint64_t dropped = 0;
    for (unsigned i = 0; i < count; i++) {
        struct cs_shard_stats st;
        if (cs_stats(cli->db, i, &st) == 0)
            dropped += st.recovery_salvaged_bytes + st.recovery_torn_bytes;
    }
    int rc = cs_checkpoint(cli->db);
    if (rc != 0)
        return cli_fail(rc, "salvage: checkpoint after recovery");
    printf("salvage: the database opens; %" PRIu64 " WAL bytes were cut (details on stderr)\n",
           dropped);
    return 0;
}

/* backup DIR: cs_backup into DIR, which must be absent or empty (the database's own process
 * could call it while serving; this command is that process for its run). */
static int cmd_backup(struct cli *cli, int argc, char **argv)
{
    (void)argc;
    const char *dir = argv[1];
    if (dir[0] == '\0')
        return cli_usage_error("backup: DIR is empty");
    int ex = cli_open(cli, CLI_OPEN_EXISTING);
    if (ex != 0)
        return ex;
    int rc = cs_backup(cli->db, dir);
    if (rc != 0)
        return cli_fail(rc, "backup into '%s'", dir);
    printf("backup: '%s' holds a copy of the %u shards (check it with: cstore --db '%s' verify)\n",
           dir, cs_shard_count(cli->db), dir);
    return 0;
}

static int cmd_help(struct cli *cli, int argc, char **argv)
{
    (void)cli;
    (void)argc;
    (void)argv;
    cli_usage(stdout);
    return 0;
}

static const struct cli_command cli_commands[] = {
    {"put", cmd_put, 3, 5, "put COLL KEY VALUE [--ttl-ms N]"},
    {"get", cmd_get, 2, 2, "get COLL KEY"},
    {"ttl", cmd_ttl, 2, 2, "ttl COLL KEY"},
    {"del", cmd_del, 2, 2, "del COLL KEY"},
    {"scan", cmd_scan, 1, -1, "scan COLL [--from K] [--to K] [--limit N]"},
    {"dump", cmd_dump, 1, 1, "dump COLL"},
    {"load", cmd_load, 2, 2, "load COLL FILE|-"},
    {"apply", cmd_apply, 1, 1, "apply FILE|-"},
    {"watch", cmd_watch, 1, -1, "watch COLL|- [--from TOKEN] [--follow]"},
    {"collections", cmd_collections, 0, 0, "collections"},
    {"create", cmd_create, 1, 1, "create COLL"},
    {"drop", cmd_drop, 1, 1, "drop COLL"},
    {"stat", cmd_stat, 0, 1, "stat [--prometheus]"},
    {"checkpoint", cmd_checkpoint, 0, 0, "checkpoint"},
    {"verify", cmd_verify, 0, 0, "verify"},
    {"salvage", cmd_salvage, 0, 0, "salvage"},
    {"backup", cmd_backup, 1, 1, "backup DIR"},
    {"help", cmd_help, 0, 0, "help"},
};

/* ---- Global options ---- */

/* Record the engine option NAME (dashes become underscores) with value; name_len bytes. */
static int cli_add_opt(struct cli *cli, const char *flag, const char *name, size_t name_len,
                       const char *value)
{
    if (name_len == 0 || name_len > CLI_OPT_NAME_MAX)
        return cli_usage_error("unknown option '%s'", flag);
    struct cli_opt *opt = &cli->opts[cli->opt_count++];
    for (size_t i = 0; i < name_len; i++)
        opt->name[i] = name[i] == '-' ? '_' : name[i];
    opt->name[name_len] = '\0';
    opt->value = value;
    opt->flag = flag;
    return 0;
}

/* Parse the options before the command. Returns 0 and sets *cmd_index, or an exit status
 * (-1 for --help/--version, which are done). */
static int cli_parse_globals(struct cli *cli, int argc, char **argv, int *cmd_index)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_usage(stdout);
            return -1;
        }
        if (strcmp(a, "--help-options-markdown") == 0) {
            options_write_markdown(stdout);
            return -1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("cstore %s\n", CS_VERSION_STRING);
            return -1;
        }
        if (strcmp(a, "-e") == 0 || strcmp(a, "--escaped") == 0) {
            cli->escaped = 1;
            continue;
        }
        if (a[1] != '-')
            return cli_usage_error("unknown option '%s'", a);
        /* --NAME VALUE or --NAME=VALUE */
        const char *name = a + 2;
        size_t nlen = strcspn(name, "=");
        const char *value;
        if (name[nlen] == '=')
            value = name + nlen + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return cli_usage_error("option '%s' needs a value", a);
        if (nlen == 2 && strncmp(name, "db", 2) == 0) {
            cli->db_path = value;
        } else if (nlen == 6 && strncmp(name, "config", 6) == 0) {
            cli->config_path = value;
        } else if (nlen == 3 && strncmp(name, "set", 3) == 0) {
            const char *eq = strchr(value, '=');
            if (eq == NULL)
                return cli_usage_error("--set '%s': expected NAME=VALUE", value);
            int ex = cli_add_opt(cli, value, value, (size_t)(eq - value), eq + 1);
            if (ex != 0)
                return ex;
        } else {
            int ex = cli_add_opt(cli, a, name, nlen, value);
            if (ex != 0)
                return ex;
        }
    }
    *cmd_index = i;
    return 0;
}

int main(int argc, char **argv)
{
    struct cli cli = {.db_path = NULL};
    /* A closed stdout must not kill us before cs_close (async writes would be lost): write
     * errors are reported instead. */
    signal(SIGPIPE, SIG_IGN);
    const char *env = getenv("CSTORE_DB");
    cli.db_path = env != NULL && env[0] != '\0' ? env : CLI_DB_DEFAULT;
    /* at most one per argument, and one that `salvage` adds */
    cli.opts = calloc((size_t)argc + 1, sizeof(*cli.opts));
    if (cli.opts == NULL) {
        fputs("cstore: out of memory\n", stderr);
        return EXIT_ERROR;
    }
    int cmd_index = 0;
    int ex = cli_parse_globals(&cli, argc, argv, &cmd_index);
    if (ex != 0) {
        free(cli.opts);
        return ex < 0 ? 0 : ex;
    }
    if (cmd_index >= argc) {
        cli_usage(stderr);
        free(cli.opts);
        return EXIT_USAGE;
    }
    if (cli.db_path[0] == '\0') {
        free(cli.opts);
        return cli_usage_error("--db needs a folder");
    }
    const char *name = argv[cmd_index];
    const struct cli_command *cmd = NULL;
    for (size_t j = 0; j < sizeof(cli_commands) / sizeof(cli_commands[0]); j++)
        if (strcmp(name, cli_commands[j].name) == 0)
            cmd = &cli_commands[j];
    int nargs = argc - cmd_index - 1;
    if (cmd == NULL)
        ex = cli_usage_error("unknown command '%s'", name);
    else if (nargs < cmd->args_min || (cmd->args_max >= 0 && nargs > cmd->args_max))
        ex = cli_usage_error("usage: cstore [OPTIONS] %s", cmd->usage);
    else
        ex = cmd->run(&cli, argc - cmd_index, argv + cmd_index);

    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE) /* a reader that left (dump | head) is no news */
            fprintf(stderr, "cstore: writing the output: %s\n", strerror(errno ? errno : EIO));
        if (ex == 0)
            ex = EXIT_ERROR;
    }
    if (cli.db != NULL) {
        int rc = cs_close(cli.db);
        if (rc != 0) {
            int cex = cli_fail(rc, "closing database '%s'", cli.db_path);
            if (ex == 0)
                ex = cex;
        }
    }
    free(cli.opts);
    return ex;
}
