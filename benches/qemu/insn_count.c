/* A qemu-user TCG plugin that counts executed guest instructions: a repeatable
 * cost figure for a program under emulation (benches/qemu/count.sh).
 *
 * Debian's qemu-user (7.2) loads plugins but ships neither plugins nor the
 * qemu-plugin.h header, so the few declarations used here are written out from
 * qemu 7.2's include/qemu/qemu-plugin.h (plugin API version 1). */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index,
                                              int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                                              uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                                              uint64_t a8);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
struct qemu_plugin_insn;
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One counter for all vCPUs: exact for single-threaded guests (run owlet with
 * --threads 1); inline adds from several threads may race. */
static uint64_t insns;

/* The multiply instructions a kernel is made of, by A64 encoding (mask, value), so
 * that a count says which code ran: `sdot` on a CPU with dotprod, the widening
 * `smull`/`smlal` path without, `fmla` for f32 products. Counted whole-process. */
static const struct {
    const char *name;
    uint32_t mask, value;
} CLASSES[] = {
    {"sdot/udot (by element)", 0x9f00f400, 0x0f00e000},
    {"sdot/udot (vector)", 0x9fe0fc00, 0x0e809400},
    {"smmla/ummla (i8mm)", 0xdfe0fc00, 0x4e80a400},
    {"smull/umull(2)", 0x9f20fc00, 0x0e20c000},
    {"smlal/umlal(2)", 0x9f20fc00, 0x0e208000},
    {"sadalp/uadalp", 0x9f3ffc00, 0x0e206800},
    {"fmla (vector)", 0xbfa0fc00, 0x0e20cc00},
    {"fmla (by element)", 0xbf80f400, 0x0f801000},
};
#define N_CLASSES (sizeof CLASSES / sizeof CLASSES[0])
static uint64_t class_counts[N_CLASSES];

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_size(insn) != 4)
            continue;
        uint32_t word;
        const unsigned char *bytes = qemu_plugin_insn_data(insn);
        word = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
               (uint32_t)bytes[3] << 24;
        for (size_t c = 0; c < N_CLASSES; c++) {
            if ((word & CLASSES[c].mask) == CLASSES[c].value) {
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &class_counts[c], 1);
                break;
            }
        }
    }
}

/* A guest marks the part it wants counted with two calls of getppid (aarch64
 * syscall 173, which takes no argument) whose first argument register holds MARK:
 * the instructions between the first and the second are reported on their own
 * ("marked instructions"), without the start-up, loading and planning before them,
 * whose count varies by a few million from run to run (hash maps are seeded per
 * process). runtime/examples/graph_runs marks its runs so. */
#define GETPPID_AARCH64 173
#define MARK 0x6f776c6574ULL /* "owlet" */
static uint64_t mark_start, marked;
static int marks;

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8) {
    (void)id, (void)vcpu, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != GETPPID_AARCH64 || a1 != MARK)
        return;
    if (marks++ % 2 == 0)
        mark_start = insns;
    else
        marked += insns - mark_start;
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    char buf[128];
    snprintf(buf, sizeof buf, "guest instructions: %" PRIu64 "\n", insns);
    qemu_plugin_outs(buf);
    if (marks > 0) {
        snprintf(buf, sizeof buf, "marked instructions: %" PRIu64 "\n", marked);
        qemu_plugin_outs(buf);
    }
    for (size_t c = 0; c < N_CLASSES; c++) {
        snprintf(buf, sizeof buf, "class %s: %" PRIu64 "\n", CLASSES[c].name, class_counts[c]);
        qemu_plugin_outs(buf);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv) {
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
