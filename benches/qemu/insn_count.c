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

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One counter for all vCPUs: exact for single-threaded guests (run owlet with
 * --threads 1); inline adds from several threads may race. */
static uint64_t insns;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
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
