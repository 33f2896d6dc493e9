#!/bin/sh
# Mutation test of raft-sim: plants classic Raft bugs in a copy of raft/ (and storage bugs in a
# copy of the simulator's disk, tests/sim/sim_store.c, which stands for the WAL's contract), one
# at a time, builds raft-sim against each copy and runs it on MUTANT_SEEDS seeds (default 300) at
# 3 and at 5 nodes. Prints a table: per planted bug and node count, the seeds that ran and the
# seeds that caught it (failed), then the checks that caught them with the fault classes of
# those seeds. Exits non-zero if some planted bug is caught in fewer than half the seeds that
# ran at either node count (the simulator must catch each in most seeds, not by luck), or if the
# unmutated copy fails a seed.
#
# Usage: BUILD=build sh tests/sim/mutants.sh   (needs $BUILD/libcstore.a; `make test-long` runs it)
#        MUTANTS=name,name ... runs only those planted bugs (and the unmutated copy).
#
# Each mutant is one sed expression against one file (a path from the repository root); the
# script checks that it changed the file, so a refactoring that moves the line makes the script
# fail instead of testing nothing. Seeds run with --keep-going: a core assertion counts as a
# failed seed ("abort").
set -u
BUILD=${BUILD:-build}
SEEDS=${MUTANT_SEEDS:-300}
root=$(cd "$(dirname "$0")/../.." && pwd)
lib="$root/$BUILD/libcstore.a"
if [ ! -f "$lib" ]; then
    echo "mutants.sh: $lib missing (make BUILD=$BUILD lib first)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/raft-mutants.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
CC=${CC:-cc}
CF="-O2 -std=gnu11 -D_GNU_SOURCE -w"
LIBS="-luring -llz4 -lxxhash -linih -lck -lpthread -lm -ljemalloc"

# name|file|sed expression
mutants() {
    cat <<'EOF'
none|raft/raft.c|s/^$/&/
commit-old-term-by-counting|raft/replication.c|s/if (idx <= r->commit || log_term_or0(r, idx) != r->term)/if (idx <= r->commit)/
vote-not-persisted-before-sent|raft/election.c|s/^\( *\)r->vote = m->from;/&\n\1r->persisted_hs.term = r->term;\n\1r->persisted_hs.vote = r->vote;/
propose-during-transfer|raft/raft.c|/^    if (r->transferee)$/{N;d}
follower-commits-to-last-index|raft/replication.c|s/log_commit_to(r, m->commit < last_new ? m->commit : last_new);/log_commit_to(r, m->commit);/
heartbeat-full-commit|raft/replication.c|s/m->commit = pr->match < r->commit ? pr->match : r->commit;/m->commit = r->commit;/
readindex-no-quorum-round|raft/read.c|s/p->acks = conf_self_bit(r); \/\* 0 for a leader/p->acks = ~0u; \/\* 0 for a leader/
readindex-counts-older-rounds|raft/read.c|s/if (p->seq <= context \&\& !p->await_commit)/if (p->seq <= context + 1000000 \&\& !p->await_commit)/
conf-before-first-commit-in-term|raft/raft.c|s/^           log_committed_in_term(r);$/           true;/
conf-while-previous-uncommitted|raft/raft.c|s/return !r->transferee \&\& r->conf_index <= r->commit \&\& !raft_conf_is_joint(\&r->conf) \&\&/return !r->transferee \&\&/
ack-before-persist|raft/raft.c|s/rd->entries_n = (size_t)(last - r->stable);/rd->entries_n = (size_t)(last - r->stable - (last - r->stable > 1));/
persist-error-ignored|raft/raft.c|s/^    return st->save(st->ctx, \&b);/    (void)st->save(st->ctx, \&b);\n    return 0;/
hard-state-in-a-unit-of-its-own|raft/raft.c|s/^    return st->save(st->ctx, \&b);/    if (b.entries_n \&\& b.hard_state) {\n        struct raft_batch h = {.hard_state = b.hard_state};\n        b.hard_state = NULL;\n        int rc = st->save(st->ctx, \&b);\n        return rc ? rc : st->save(st->ctx, \&h);\n    }\n&/
torn-frame-kept-at-recovery|tests/sim/sim_store.c|/^void sim_store_crash/,/^}/s/if (!s->dirty)/if (s->dirty || !s->dirty)/
stale-append-ack-counted|raft/raft.c|s/^    } else if (m->term < r->term) {$/    } else if (m->term < r->term \&\& m->type != RAFT_MSG_APP_RESP) {/
snapshot-not-persisted|raft/raft.c|s/^                           .snapshot = rd->snapshot,$/                           .snapshot = NULL,/
restart-skips-reapply|raft/log.c|s/^    r->applied = s.index;/    r->applied = r->commit;/
uncommitted-bytes-never-released|raft/replication.c|s/r->uncommitted_bytes -= len < r->uncommitted_bytes ? len : r->uncommitted_bytes;/(void)len;/
lease-read-trusts-clock|raft/read.c|s/p->acks = conf_self_bit(r); \/\* 0 for a leader/p->acks = r->election_elapsed < r->cfg.election_ticks \/ 2 ? ~0u : conf_self_bit(r); \/\* 0 for a leader/
snapshot-installed-before-last-chunk|raft/replication.c|s/^    if (!c->last) {$/    if (!c->last \&\& c->offset == 0) {/
chunk-of-another-transfer-taken|raft/replication.c|s/x->transfer == m->chunk.transfer \&\& x->snap.index == m->snapshot.index \&\&/1 \&\&/
joint-decided-by-c-new-alone|raft/configuration.c|s/return c->old_n ? 2u : 1u;/return 1u;/
joint-left-before-it-commits|raft/raft.c|/^    if (r->conf_index > r->commit)$/{N;d}
removed-leader-counts-itself|raft/configuration.c|s/^    unsigned listed = 0;$/    unsigned listed = 0;\n    if (!ids_contain(ids, n, r->id))\n        m[listed++] = r->stable;/
EOF
}

# seeds run and failed of one run, and its per-check lines folded into "check:n,check:n"
run_sim() { # bin nodes out
    "$1" --seeds "$SEEDS" --nodes "$2" --keep-going >"$3" 2>/dev/null
}
failed_of() {
    sed -n 's/^[0-9]* passed, \([0-9]*\) failed$/\1/p' "$1" | tail -n 1
}
ran_of() {
    sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$1" | tail -n 1 |
        awk '{ print $1 + $2 }'
}
selected() { # name: in $MUTANTS, or no filter
    [ -z "${MUTANTS:-}" ] || [ "$1" = none ] && return 0
    case ",$MUTANTS," in *",$1,"*) return 0 ;; esac
    return 1
}
weak() { # caught ran: true if caught in fewer than half of the seeds that ran (or none ran)
    [ -z "$1" ] || [ -z "$2" ] || [ "$2" -eq 0 ] || [ $(($1 * 2)) -lt "$2" ]
}
checks_of() { # "check:seeds[class=n,class=n]" per check that caught seeds
    sed -n 's/^failed check \([a-z-]*\) *\([0-9]*\) seeds: \(.*\)$/\1:\2[\3]/p' "$1" |
        sed 's/\([a-z]\) \([0-9]\)/\1=\2/g; s/\([0-9]\) \([a-z]\)/\1,\2/g' | tr '\n' ' '
}

status=0
printf '%-34s %7s %7s %7s %7s  %s\n' "planted bug" "seeds/3" "caught" "seeds/5" "caught" \
    "caught by (3 nodes | 5 nodes)"
mutants | while IFS='|' read -r name file expr; do
    selected "$name" || continue
    d="$tmp/$name"
    mkdir -p "$d/raft" "$d/tests/sim"
    cp "$root"/raft/*.c "$root"/raft/*.h "$d/raft/"
    cp "$root"/tests/sim/raft_sim.c "$root"/tests/sim/sim_store.c "$root"/tests/sim/sim.h \
        "$d/tests/sim/"
    sed "$expr" "$root/$file" >"$d/$file"
    if [ "$name" != none ] && cmp -s "$root/$file" "$d/$file"; then
        echo "mutants.sh: mutant $name did not apply to $file" >&2
        echo fail >>"$tmp/status"
        continue
    fi
    objs=""
    for c in "$d"/raft/*.c "$d"/tests/sim/raft_sim.c "$d"/tests/sim/sim_store.c; do
        o="${c%.c}.o"
        $CC $CF -I"$d" -I"$root/include" -I"$root/common" -c "$c" -o "$o" || {
            echo "mutants.sh: mutant $name does not build" >&2
            echo fail >>"$tmp/status"
            continue 2
        }
        objs="$objs $o"
    done
    # the mutated raft objects come first: the archive's own raft objects are never pulled in
    # shellcheck disable=SC2086
    $CC -o "$d/raft-sim" $objs "$lib" $LIBS || {
        echo "mutants.sh: mutant $name does not link" >&2
        echo fail >>"$tmp/status"
        continue
    }
    run_sim "$d/raft-sim" 3 "$d/out3" &
    run_sim "$d/raft-sim" 5 "$d/out5"
    wait
    f3=$(failed_of "$d/out3")
    f5=$(failed_of "$d/out5")
    n3=$(ran_of "$d/out3")
    n5=$(ran_of "$d/out5")
    printf '%-34s %7s %7s %7s %7s  %s| %s\n' "$name" "${n3:-?}" "${f3:-?}" "${n5:-?}" "${f5:-?}" \
        "$(checks_of "$d/out3")" "$(checks_of "$d/out5")"
    if [ "$name" = none ]; then
        [ "${f3:-1}" = 0 ] && [ "${f5:-1}" = 0 ] && [ -n "$n3" ] && [ -n "$n5" ] ||
            echo fail >>"$tmp/status"
    elif weak "$f3" "$n3" || weak "$f5" "$n5"; then
        echo "mutants.sh: $name caught in fewer than half its seeds" >&2
        echo fail >>"$tmp/status"
    fi
done
if [ -s "$tmp/status" ]; then
    echo "mutants.sh: some planted bug was caught in fewer than half its seeds (or the harness" \
        "failed)"
    status=1
fi
exit $status
