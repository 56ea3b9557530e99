/* What the fuzz targets share: the layouts of their inputs (gen_corpus.c
 * writes the seed corpus in them) and how a broken invariant fails. */
#ifndef MLXD_FUZZ_FORMAT_H
#define MLXD_FUZZ_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// Fails loudly on a broken invariant: libFuzzer keeps the input as a crash.
#define CHECK(cond)                                                                                                   \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                              \
            abort();                                                                                                  \
        }                                                                                                             \
    } while (0)

/* ---- fuzz_request ----
 * [flags] [len 1] [len 2] [Request protobuf]
 * flags % 3 is the number of data frames (0 to FUZZ_MAX_FRAMES); each length
 * is 4 bytes little-endian. A length of FUZZ_LEN_AUTO or more stands for the
 * length the tensor naming that frame needs (0 when none does) plus the low
 * byte read as an int8_t: exact and off-by-a-little lengths are one value
 * away. */

// server.c's MAX_DATA_FRAMES: a request with more data frames is refused
// before it is decoded.
#define FUZZ_MAX_FRAMES 2
#define FUZZ_LEN_AUTO 0xffffff00u

struct fuzz_request_head {
    int nframes;
    uint32_t raw[FUZZ_MAX_FRAMES];      // as written
    size_t lens[FUZZ_MAX_FRAMES];       // the same, as frame lengths
};

// Reads the head; returns its length, or 0 when data is too short for it.
static inline size_t fuzz_request_head_parse(const uint8_t *data, size_t size, struct fuzz_request_head *h) {
    if (size < 1)
        return 0;
    h->nframes = data[0] % (FUZZ_MAX_FRAMES + 1);
    size_t off = 1;
    for (int i = 0; i < h->nframes; i++) {
        if (size - off < 4)
            return 0;
        h->raw[i] = (uint32_t) data[off] | (uint32_t) data[off + 1] << 8 | (uint32_t) data[off + 2] << 16 |
                    (uint32_t) data[off + 3] << 24;
        h->lens[i] = h->raw[i];
        off += 4;
    }
    return off;
}

/* ---- fuzz_control ----
 * A sequence of records, each [from] [len, 2 bytes little-endian] [len bytes
 * of a packed mlxd.ctl.Ctl]; from % FUZZ_WORLD is the sending world rank. A
 * last record shorter than its len takes what is left. */
#define FUZZ_WORLD 4

/* ---- fuzz_control_struct ----
 * A sequence of steps, each a kind byte (% FUZZ_STEP_MAX) and the bytes that
 * kind reads (fuzz_control_struct.c); a step reading past the end gets
 * zeros. */
enum fuzz_step {
    FUZZ_STEP_JOIN,         // job, uid, size, rank, from, pid
    FUZZ_STEP_LEAVE,        // job, rank, from, timed_out, waited
    FUZZ_STEP_ARRIVE,       // group, rank, from, seq, desc
    FUZZ_STEP_TIMEOUT,      // group, rank, from, seq, waited
    FUZZ_STEP_ABORT_REQ,    // group, from, code, message
    FUZZ_STEP_GROUP_GONE,   // group, from
    FUZZ_STEP_ODD,          // what, from: host-bound kinds, empty bodies, senders outside the world
    FUZZ_STEP_DEPART,       // group, rank, from, seq (last: the kinds above keep their values)
    FUZZ_STEP_MAX,
};

#endif
