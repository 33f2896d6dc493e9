/* libFuzzer target for the option parser (engine/options.c): cs_options_set, with the cpuset and
 * size parsers and the fault-plan parser (io/fault.c) behind it, and cs_options_load, which reads
 * an INI file with inih. Built and run by `make fuzz`.
 *
 * Input: byte 0 selects the mode (modulo 3), the rest is text.
 *   0: "NAME=VALUE": cs_options_set(NAME, VALUE) (split at the first '=', no '=': empty value);
 *   1: byte 1 picks a known option name, the rest is its value;
 *   2: the rest is an INI file, written to one temporary file reused by every input, and loaded
 *      with cs_options_load.
 * NUL bytes end the strings, as they would in C.
 *
 * Properties checked: the result is 0 or one of the documented codes (CS_EOPTION, CS_EOPTVAL,
 * CS_EINVAL, -errno for the file); a refused value leaves the options as they were; a value
 * accepted once is accepted again, to the same effect; a load's bad line number is never
 * negative. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cstore.h"
#include "engine/options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
    "shards",
    "cpuset",
    "durability",
    "sync_interval_ms",
    "group_commit_delay_us",
    "wait_yield_us",
    "wal_segment_bytes",
    "wal_compress_bytes",
    "batch_max",
    "checkpoint_wal_bytes",
    "memory_limit",
    "salvage",
    "fault",
};

static char ini_path[128]; /* the INI file, made once */

static bool known(int rc)
{
    return rc == 0 || rc == CS_EOPTION || rc == CS_EOPTVAL || rc == CS_EINVAL;
}

/* Set name to value on fresh options and check the properties of the header comment. */
static void set_one(const char *name, const char *value)
{
    cs_options *o = cs_options_new();
    if (!o)
        return;
    struct cs_options before = *o;
    int rc = cs_options_set(o, name, value);
    if (!known(rc))
        abort();
    if (rc != 0 && memcmp(&before, o, sizeof(before)) != 0)
        abort();
    if (rc == 0) {
        struct cs_options after = *o;
        if (cs_options_set(o, name, value) != 0 || memcmp(&after, o, sizeof(after)) != 0)
            abort();
    }
    cs_options_free(o);
}

static void remove_ini(void)
{
    unlink(ini_path);
}

static void load_ini(const char *text, size_t len)
{
    if (!ini_path[0]) {
        const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(ini_path, sizeof(ini_path), "%s/cs-fuzz-ini-XXXXXX", root ? root : "/tmp");
        int fd = mkstemp(ini_path);
        if (fd < 0)
            abort();
        close(fd);
        atexit(remove_ini);
    }
    FILE *f = fopen(ini_path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        abort();
    cs_options *o = cs_options_new();
    if (!o)
        return;
    int line = -1;
    int rc = cs_options_load(o, ini_path, &line);
    if (!(known(rc) || rc == -ENOMEM) || line < 0)
        abort();
    cs_options_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 3;
    char *text = malloc(size); /* the rest, NUL-terminated */
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (mode == 0) {
        char *eq = strchr(text, '=');
        if (eq)
            *eq = '\0';
        set_one(text, eq ? eq + 1 : "");
    } else if (mode == 1 && size >= 2) {
        set_one(names[(uint8_t)text[0] % CS_ARRAY_SIZE(names)], text + 1);
    } else if (mode == 2) {
        load_ini(text, strlen(text));
    }
    free(text);
    return 0;
}
