/* The request/reply ring: memory a client shares with its daemon, one per
 * connection, beside the ZeroMQ socket (proto/PROTOCOL.md, "The ring").
 * This is the pure part both sides share: the layout, and writing and
 * reading records. It keeps no state of its own and never trusts the other
 * side: every index and length read from shared memory is bounded before
 * use, a record's lengths are read once (copied out), and its bytes are
 * copied out of the ring before anybody looks at them.
 *
 * The memory is a header page, then the request area (the client writes,
 * the daemon reads), then the reply area (the other way). Each area is a
 * byte ring of a power-of-two size with two free-running 64-bit indices:
 * head (bytes written, advanced by the producer) and tail (bytes read,
 * advanced by the consumer). A record is an 8-byte header {pb_len, with
 * WIRE_RING_FRAME set when a raw frame follows (it may be empty), and
 * data_len}, the protobuf (a Request or a Reply), then the raw tensor
 * bytes, padded to 8 bytes; it may wrap around the area's end. */
#ifndef MLXD_RING_H
#define MLXD_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_RING_MAGIC 0x6d6c7872u     // "mlxr"
#define WIRE_RING_VERSION 1u
// The header's size, and where the request area starts.
#define WIRE_RING_HDR 4096u
// Bytes of each area the library makes; the daemon accepts any power of two
// from WIRE_RING_AREA_MIN to WIRE_RING_AREA_MAX.
#define WIRE_RING_AREA (256u * 1024u)
#define WIRE_RING_AREA_MIN 4096u
#define WIRE_RING_AREA_MAX (4u * 1024u * 1024u)
// A record's header, and its flag for "a raw frame follows".
#define WIRE_RING_REC 8u
#define WIRE_RING_FRAME 0x80000000u

// What sits in the header page. Indices and flags are written by one side
// each (named below) and read by the other, which bounds them before use.
struct wire_ring_hdr {
    uint32_t magic;                     // WIRE_RING_MAGIC, written by the client
    uint32_t version;                   // WIRE_RING_VERSION
    uint32_t area;                      // bytes of each area
    uint32_t reserved;
    _Alignas(64) _Atomic uint64_t req_head;  // client
    _Alignas(64) _Atomic uint64_t req_tail;  // daemon
    _Alignas(64) _Atomic uint64_t rep_head;  // daemon
    _Alignas(64) _Atomic uint64_t rep_tail;  // client
    _Alignas(64) _Atomic uint32_t client_sleeping;  // client: ring my bell before I see a reply
    _Atomic uint32_t daemon_sleeping;   // daemon: ring my bell when you write a request
    _Atomic uint32_t closed;            // daemon: it reads no more requests here (WIRE_RING_CLOSED_*)
};

// Why a ring is closed: the daemon gave it up (its session goes on over
// ZeroMQ), or closed its session because the client broke the ring.
enum {
    WIRE_RING_CLOSED_RING = 1,
    WIRE_RING_CLOSED_SESSION = 2,
};

// One side's view of one area: where it is, and the two indices. Our own
// index is kept here (mine) and only published to shared memory; the
// other side's is read from shared memory each time, and bounded.
struct ring_end {
    uint8_t *area;
    uint64_t size;                      // a power of two
    uint64_t mine;                      // head for a producer, tail for a consumer
    _Atomic uint64_t *mine_pub;         // where mine is published
    _Atomic uint64_t *theirs;           // the other side's index
    uint32_t peek_pb, peek_data;        // lengths of the record ring_peek() found
    bool peeked;
};

// The bytes a record of these lengths takes in an area, or 0 when it can
// never fit in one of size bytes.
uint64_t ring_record_size(uint64_t size, size_t pb_len, size_t data_len);

// Checks a header page as a daemon maps it: magic, version, an area that is
// a power of two within bounds and that, twice, fits in len bytes after the
// header. Returns the area size, or 0 when anything is off. The header is
// read once: the caller keeps the size it returns.
uint32_t ring_check_header(const struct wire_ring_hdr *h, size_t len);

// Sets up the client's (client = true) or the daemon's views of both areas
// of the memory at base whose area size is area (as ring_check_header()
// said, or as the client wrote it). Both sides start at index 0.
void ring_ends(uint8_t *base, uint32_t area, bool client, struct ring_end *ret_req, struct ring_end *ret_rep);

// Producer: appends one record (pb, then data: a raw frame of data_len
// bytes, or none when data is NULL) and publishes it. 0; -EAGAIN when there is no room now;
// -EMSGSIZE when it can never fit; -EPROTO when the consumer's index is not
// one a consumer can have (the other side broke the ring).
int ring_put(struct ring_end *e, const void *pb, size_t pb_len, const void *data, size_t data_len);

// Consumer: looks at the next record. 1 with its lengths in *ret_pb_len and
// *ret_data_len, 0 when none is there, -EPROTO when the producer's index
// or the record's lengths are impossible or above max_pb / max_data. The
// lengths are copied out once; ring_read() uses those.
// *ret_frame says whether the record carries a raw frame (of *ret_data_len
// bytes, maybe 0).
int ring_peek(struct ring_end *e, size_t max_pb, size_t max_data, size_t *ret_pb_len, size_t *ret_data_len,
              bool *ret_frame);

// Consumer: copies the record ring_peek() found into pb and data (either
// may be NULL to skip those bytes) and frees its room.
void ring_read(struct ring_end *e, void *pb, void *data);

// Producer: whether the consumer has taken everything published.
bool ring_drained(const struct ring_end *e);

// Consumer: whether a record is published and not yet read.
bool ring_pending(const struct ring_end *e);

#endif
