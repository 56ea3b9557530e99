/* libFuzzer target: the daemons' control messages as the coordinator gets
 * them. The input is a sequence of records (fuzz_format.h), each a sending
 * world rank and a packed mlxd.ctl.Ctl; every record is decoded as the
 * engine does (world.c, handle_packed) and handed to one coordinator of a
 * world of FUZZ_WORLD daemons, and everything the coordinator queues is
 * decoded and checked against the model in ctl_oracle.c. Random bytes seldom
 * make a protobuf that reaches deep states: fuzz_control_struct builds the
 * messages field by field instead. */
#include <stddef.h>
#include <stdint.h>

#include "ctl_oracle.h"
#include "fuzz_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct oracle *o = oracle_new(FUZZ_WORLD);
    uint64_t now = 1000000;
    size_t off = 0;
    while (size - off >= 3) {
        int from = data[off] % FUZZ_WORLD;
        size_t len = (size_t) data[off + 1] | (size_t) data[off + 2] << 8;
        off += 3;
        if (len > size - off)
            len = size - off;
        oracle_step_packed(o, from, data + off, len, now);
        off += len;
        now += 1000;
    }
    oracle_free(o);
    return 0;
}
