/* cs_strerror(): one message for every return code of the API. Project codes occupy the band
 * [CS_ERR_LAST, CS_ERR_BASE]; anything else negative is -errno and described by strerror_r into
 * thread-local storage. */
#include <stdio.h>
#include <string.h>

#include "cstore.h"

static const char *const messages[] = {
    [0] = "not found",
    [1] = "invalid argument",
    [2] = "data is corrupt (bad checksum or structure on disk)",
    [3] = "transaction conflict; retry",
    [4] = "a bounded queue, table or memory limit is full",
    [5] = "key must be 1 to 1024 bytes",
    [6] = "value must be at most 1 MiB",
    [7] = "collection name must be 1 to 64 bytes without '/'",
    [8] = "unknown option name",
    [9] = "invalid option value",
    [10] = "shard count differs from the one the database was created with",
    [11] = "cpuset names CPUs that do not exist or has fewer CPUs than shards",
    [12] = "database is locked by another process",
    [13] = "not supported (a batch spanning several shards needs cross-shard transactions)",
    [14] = "an earlier write failed: the shard is read-only until the database is reopened",
    [15] = "already exists (a collection, or a backup target folder that is not empty)",
    [16] = "data path exists and is not a folder",
    [17] = "data folder has an unknown format version",
    [18] = "database is closing",
    [19] = "batch too large",
};

_Static_assert(sizeof(messages) / sizeof(messages[0]) == (size_t)(CS_ERR_BASE - CS_ERR_LAST + 1),
               "one message per project error code");

const char *cs_strerror(int rc)
{
    static _Thread_local char buf[128];
    if (rc == 0)
        return "success";
    if (rc <= CS_ERR_BASE && rc >= CS_ERR_LAST)
        return messages[CS_ERR_BASE - rc];
    if (rc < 0 && rc > -4096) {
        const char *s = strerror_r(-rc, buf, sizeof(buf));
        return s ? s : "unknown system error";
    }
    snprintf(buf, sizeof(buf), "unknown error %d", rc);
    return buf;
}
