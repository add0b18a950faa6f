/* Copied from the project's reference recipe, ../shared/arm64/icount.c (built by ci/arm64.sh prepare
 * for benchmarks/pi_budget.py); unchanged below this line. */
/* icount.c - QEMU TCG plugin (API v1, QEMU 7.2): per-thread guest instruction counts between
 * markers. The guest marks a region with write(987654, buf, 1) (begin) and write(987654, buf, 2)
 * (end); at "end" the plugin prints instructions executed since "begin" per guest thread, how
 * many had a vector (v/q register) operand, and the top mnemonics in the region. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;
#define MAXCPU 256
#define MAXMN 8192
#define MARK_FD 987654
typedef struct { uint32_t n, nvec; uint16_t mn[]; } TB;
static uint64_t cnt[MAXCPU], vec[MAXCPU], c0[MAXCPU], v0[MAXCPU];
static uint64_t hist[MAXMN];
static volatile int recording;
static GHashTable *mnids; static char *mnames[MAXMN]; static int nmn; static GMutex lock;

static int is_vec(const char *d) {
    for (const char *p = d; *p; p++)
        if ((p[0] == 'v' || p[0] == 'q' || p[0] == 'z') && (p == d || !isalnum((unsigned char)p[-1]))
            && isdigit((unsigned char)p[1])) { const char *q = p + 1; while (isdigit((unsigned char)*q)) q++;
            if (p[0] == 'q' ? (*q == ',' || *q == 0 || *q == ' ') : (*q == '.')) return 1; }
    return 0;
}
static uint16_t mnid(const char *d) {
    char m[32]; int i = 0; while (d[i] && d[i] != ' ' && i < 31) { m[i] = d[i]; i++; } m[i] = 0;
    g_mutex_lock(&lock);
    gpointer v = g_hash_table_lookup(mnids, m); uint16_t id;
    if (v) id = GPOINTER_TO_UINT(v) - 1;
    else { id = nmn < MAXMN - 1 ? nmn++ : MAXMN - 1; mnames[id] = g_strdup(m);
           g_hash_table_insert(mnids, g_strdup(m), GUINT_TO_POINTER(id + 1)); }
    g_mutex_unlock(&lock); return id;
}
static void tb_exec(unsigned int cpu, void *ud) {
    TB *t = ud; cpu %= MAXCPU; cnt[cpu] += t->n; vec[cpu] += t->nvec;
    if (recording) for (uint32_t i = 0; i < t->n; i++) __atomic_fetch_add(&hist[t->mn[i]], 1, __ATOMIC_RELAXED);
}
static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    TB *t = g_malloc0(sizeof(TB) + n * sizeof(uint16_t)); t->n = n;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *in = qemu_plugin_tb_get_insn(tb, i);
        char *d = qemu_plugin_insn_disas(in);
        if (strncmp(d, ".byte", 5) == 0 && qemu_plugin_insn_size(in) == 4) {
            /* capstone 4 lacks ARMv8.2+ encodings: name the dot-product ones ourselves */
            uint32_t w; memcpy(&w, qemu_plugin_insn_data(in), 4);
            const char *m = ((w & 0xbfe0fc00) == 0x0e809400) ? "sdot(vec)" : ((w & 0xbfe0fc00) == 0x2e809400) ? "udot(vec)"
                : ((w & 0xbfc0f400) == 0x0f80e000) ? "sdot(elem)" : ((w & 0xbfc0f400) == 0x2f80e000) ? "udot(elem)"
                : ((w & 0xffe0fc00) == 0x4e80a400) ? "smmla" : NULL;
            if (m) { g_free(d); d = g_strdup_printf("%s v", m); }
            t->mn[i] = mnid(d); t->nvec += (m != NULL); g_free(d); continue;
        }
        t->mn[i] = mnid(d); t->nvec += is_vec(d); g_free(d);
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, t);
}
static int cmp(const void *a, const void *b) { uint64_t x = hist[*(int*)a], y = hist[*(int*)b]; return x < y ? 1 : x > y ? -1 : 0; }
static void sysc(qemu_plugin_id_t id, unsigned int cpu, int64_t num, uint64_t a1, uint64_t a2,
                 uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    if (num != 64 || a1 != MARK_FD) return;   /* aarch64 write */
    if (a3 == 1) { memcpy(c0, cnt, sizeof cnt); memcpy(v0, vec, sizeof vec); memset(hist, 0, sizeof hist); recording = 1; return; }
    recording = 0;
    GString *s = g_string_new("ICOUNT region:");
    uint64_t tot = 0, tv = 0;
    for (int c = 0; c < MAXCPU; c++) { uint64_t d = cnt[c] - c0[c]; if (!d) continue;
        tot += d; tv += vec[c] - v0[c];
        g_string_append_printf(s, " t%d=%" PRIu64, c, d); }
    g_string_append_printf(s, " total=%" PRIu64 " vector=%" PRIu64 " caller=t%u\nICOUNT top:", tot, tv, cpu);
    int idx[MAXMN]; for (int i = 0; i < nmn; i++) idx[i] = i; qsort(idx, nmn, sizeof(int), cmp);
    for (int i = 0; i < nmn && i < 30 && hist[idx[i]]; i++)
        g_string_append_printf(s, " %s=%" PRIu64, mnames[idx[i]], hist[idx[i]]);
    g_string_append(s, "\n"); qemu_plugin_outs(s->str); g_string_free(s, TRUE);
}
static void at_exit(qemu_plugin_id_t id, void *p) {
    uint64_t t = 0; for (int c = 0; c < MAXCPU; c++) t += cnt[c];
    char b[96]; snprintf(b, sizeof b, "ICOUNT exit total=%" PRIu64 "\n", t); qemu_plugin_outs(b);
}
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    mnids = g_hash_table_new(g_str_hash, g_str_equal);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, sysc);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
