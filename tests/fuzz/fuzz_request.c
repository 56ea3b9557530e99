/* libFuzzer target: a client's request as the daemon's ZeroMQ front sees it
 * (daemon/loop.c, read_one and loop_request): a protobuf frame of at most
 * WIRE_MAX_PB_FRAME bytes and up to MAX_DATA_FRAMES data frames, decoded
 * with mlxd__request__unpack, checked by request_validate_lengths against
 * the daemon's default limits and, when valid, copied into a pending op by
 * request_fill_pending. The same input, read as a string, goes through
 * wire_parse_peer_address (ZeroMQ's Peer-Address property).
 *
 * Input layout (fuzz_format.h): a flags byte whose value % 3 is the number
 * of data frames; one 4-byte little-endian length per frame, where a value
 * of FUZZ_LEN_AUTO or more means "the length the tensor naming this frame
 * needs, plus (int8_t) the low byte", so that matching and off-by-one
 * lengths are easy to reach; then the Request protobuf. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_format.h"
#include "job.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool verbose;                    // $MLXD_FUZZ_VERBOSE: each verdict to stderr

// The daemon's defaults (daemon/main.c).
static const struct config cfg = {
    .max_tensor_bytes = UINT64_C(4) << 30,
    .max_group_size = 65536,
};

// wire_tensor_nbytes must agree with wire_shape_elements times the element
// size, and never report more than 63 bits.
static void check_nbytes(const Mlxd__Tensor *t) {
    uint64_t nbytes = 0, elems = 0;
    int r = wire_tensor_nbytes(t->dtype, t->n_shape, t->shape, &nbytes);
    int re = wire_shape_elements(t->n_shape, t->shape, &elems);
    const wire_dtype_info *d = wire_dtype(t->dtype);
    CHECK(r == 0 || r < 0);
    if (!d) {
        CHECK(r < 0);
        return;
    }
    if (t->n_shape > MLXD_MAX_NDIM)
        CHECK(r < 0 && re < 0);
    if (r == 0) {
        CHECK(re == 0);
        CHECK(nbytes <= (uint64_t) INT64_MAX);
        CHECK(nbytes == elems * d->size);
    }
}

// The length a data frame gets under FUZZ_LEN_AUTO: what the tensor that
// names it needs, or 0 when none does.
static size_t auto_len(const Mlxd__Request *req, uint32_t frame) {
    if (!req || req->body_case != MLXD__REQUEST__BODY_OP || !req->op)
        return 0;
    const Mlxd__Tensor *ts[2] = { req->op->input, req->op->output };
    for (int i = 0; i < 2; i++) {
        uint64_t n;
        if (ts[i] && ts[i]->frame == frame && wire_tensor_nbytes(ts[i]->dtype, ts[i]->n_shape, ts[i]->shape, &n) == 0)
            return (size_t) n;
    }
    return 0;
}

// What a valid op request promises the rest of the daemon.
static void check_valid_op(const Mlxd__OpRequest *op, const size_t *lens, int nframes) {
    unsigned named = 0;
    const Mlxd__Tensor *ts[2] = { op->input, op->output };
    for (int i = 0; i < 2; i++) {
        const Mlxd__Tensor *t = ts[i];
        uint64_t n;
        if (!t)
            continue;
        CHECK(wire_dtype(t->dtype) != NULL);
        CHECK(t->n_shape <= MLXD_MAX_NDIM);
        CHECK(wire_tensor_nbytes(t->dtype, t->n_shape, t->shape, &n) == 0);
        CHECK(n <= cfg.max_tensor_bytes);
        if (t->frame) {
            CHECK(t->segment == 0);
            CHECK(t->frame <= (uint32_t) nframes);
            CHECK(lens[t->frame - 1] == n);
            CHECK(!(named & (1u << t->frame)));
            named |= 1u << t->frame;
        }
    }
    // Every data frame is named by exactly one tensor.
    CHECK(named == (1u << (nframes + 1)) - 2);
    switch (op->op) {
    case MLXD__OP_TYPE__OP_RECV:
        CHECK(!op->input && op->output && op->output->frame == 0);
        break;
    case MLXD__OP_TYPE__OP_BARRIER:
    case MLXD__OP_TYPE__OP_SPLIT:
        CHECK(!op->input && !op->output && nframes == 0);
        break;
    default:
        CHECK(op->op >= MLXD__OP_TYPE__OP_ALL_SUM && op->op <= MLXD__OP_TYPE__OP_SEND);
        CHECK(op->input);
        CHECK(op->input->frame || op->input->segment);
        if (op->op == MLXD__OP_TYPE__OP_SUM_SCATTER)
            CHECK(op->input->n_shape > 0);
        break;
    }

    // As handle_op does: a zeroed pending filled from the request.
    struct pending p;
    memset(&p, 0, sizeof p);
    request_fill_pending(op, &p);
    CHECK(p.d.op == (int) op->op);
    CHECK(p.peer == op->peer && p.d.color == op->color && p.d.key == op->key);
    const Mlxd__Tensor *t = op->input ? op->input : op->output;
    CHECK(p.d.ndim >= 0 && p.d.ndim <= MLXD_MAX_NDIM);
    if (t) {
        uint64_t n;
        CHECK(wire_tensor_nbytes(p.d.dtype, (size_t) p.d.ndim, p.d.shape, &n) == 0);
        CHECK(n == p.nbytes);
        CHECK(p.d.dtype == t->dtype && (size_t) p.d.ndim == t->n_shape);
        if (t->frame)
            CHECK(lens[t->frame - 1] == p.nbytes);
    } else {
        CHECK(p.d.ndim == 0 && p.nbytes == 0);
    }
}

static void check_valid(const Mlxd__Request *req, const size_t *lens, int nframes) {
    switch (req->body_case) {
    case MLXD__REQUEST__BODY_PING:
    case MLXD__REQUEST__BODY_STATUS:
    case MLXD__REQUEST__BODY_GOODBYE:
        CHECK(nframes == 0);
        break;
    case MLXD__REQUEST__BODY_HELLO: {
        const Mlxd__Hello *h = req->hello;
        CHECK(nframes == 0);
        CHECK(h->version == MLXD_PROTOCOL_VERSION);
        if (!h->attach_group) {
            CHECK(wire_job_id_valid(h->job));
            CHECK(strlen(h->job) <= WIRE_JOB_ID_MAX);
            CHECK(h->size >= 1 && h->size <= cfg.max_group_size);
            CHECK(h->rank >= 0 && h->rank < h->size);
        }
        break;
    }
    case MLXD__REQUEST__BODY_OP:
        check_valid_op(req->op, lens, nframes);
        break;
    default:
        CHECK(!"an unknown body passed validation");
    }
}

static bool unknown(const void *m) {
    return m && ((const ProtobufCMessage *) m)->n_unknown_fields > 0;
}

// Whether protobuf-c kept fields it did not know anywhere in req.
static bool has_unknown_fields(const Mlxd__Request *req) {
    if (unknown(req) || unknown(req->hello))        // the body pointers share one union
        return true;
    return req->body_case == MLXD__REQUEST__BODY_OP && req->op && (unknown(req->op->input) || unknown(req->op->output));
}

// Decodes and validates one request frame with these data frame lengths.
static void run_request(const uint8_t *pb, size_t pblen, const size_t *lens_in, const uint32_t *raw, int nframes) {
    if (pblen > WIRE_MAX_PB_FRAME)
        return;                         // refused before decoding, as read_one does
    Mlxd__Request *req = mlxd__request__unpack(NULL, pblen, pb);
    if (!req)
        return;                         // "malformed request": an EPROTO reply

    size_t lens[FUZZ_MAX_FRAMES];
    for (int i = 0; i < nframes; i++) {
        lens[i] = lens_in[i];
        if (raw[i] >= FUZZ_LEN_AUTO) {
            int delta = (int8_t) (raw[i] & 0xff);
            size_t base = auto_len(req, (uint32_t) i + 1);
            lens[i] = delta < 0 && (size_t) -delta > base ? 0 : base + (size_t) (ptrdiff_t) delta;
        }
    }

    if (req->body_case == MLXD__REQUEST__BODY_OP && req->op) {
        if (req->op->input)
            check_nbytes(req->op->input);
        if (req->op->output)
            check_nbytes(req->op->output);
    }
    if (req->body_case == MLXD__REQUEST__BODY_HELLO && req->hello)
        (void) wire_job_id_valid(req->hello->job);

    char err[512];
    memset(err, 0x5a, sizeof err);
    int code = request_validate_lengths(req, lens, nframes, &cfg, err, sizeof err);
    CHECK(code <= 0 && code >= MLXD_EINTERNAL);
    if (verbose)
        fprintf(stderr, "request body %d, %d frame(s): %d %s\n", (int) req->body_case, nframes, code,
                code ? err : "valid");
    if (code < 0) {
        // A message for the client, NUL-terminated within the buffer.
        CHECK(memchr(err, '\0', sizeof err) != NULL);
        CHECK(err[0] != '\0');
    } else {
        check_valid(req, lens, nframes);
    }

    // A decoded request packs back to something that decodes and validates
    // the same way. Not quite when it held unknown fields: protobuf-c 1.4
    // keeps a field numbered 0 that came with an over-long tag (80 00) and
    // packs it as 00, which it then refuses. The daemon never packs a
    // request again, so that is no concern of its.
    size_t n = mlxd__request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(buf);
    CHECK(mlxd__request__pack(req, buf) == n);
    Mlxd__Request *again = mlxd__request__unpack(NULL, n, buf);
    CHECK(again || has_unknown_fields(req));
    if (again)
        CHECK(request_validate_lengths(again, lens, nframes, &cfg, err, sizeof err) == code);
    mlxd__request__free_unpacked(again, NULL);
    free(buf);
    mlxd__request__free_unpacked(req, NULL);
}

static void run_peer_address(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    CHECK(s);
    memcpy(s, data, size);
    s[size] = '\0';
    uid_t uid = 7;
    gid_t gid = 7;
    pid_t pid = 7;
    int r = wire_parse_peer_address(s, &uid, &gid, &pid);
    CHECK(r == 0 || r == -EINVAL);
    if (r < 0)
        CHECK(uid == 7 && gid == 7 && pid == 7);        // outputs untouched on failure
    free(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    verbose = getenv("MLXD_FUZZ_VERBOSE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run_peer_address(data, size);

    struct fuzz_request_head h;
    size_t off = fuzz_request_head_parse(data, size, &h);
    if (off == 0)
        return 0;
    run_request(data + off, size - off, h.lens, h.raw, h.nframes);
    return 0;
}
