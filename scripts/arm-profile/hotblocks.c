/*
 * hotblocks.c - QEMU TCG plugin: guest instructions executed per translation block, for
 * scripts/arm-profile (a developer tool; not part of the edgesieve binary).
 *
 * Built against the QEMU 7.2 plugin API with ../shared/tools/qemu-insncount/qemu-plugin.h
 * (QEMU's header, GPL-2.0-or-later), so this file is GPL-2.0-or-later too.
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   qemu-aarch64 -plugin ./hotblocks.so,outfile=F prog args
 *
 * At guest exit F gets one line per block that ran: "<vaddr hex> <instructions> <executions>".
 * The sum of instructions x executions is what qemu-insncount's tb mode counts. Counts are
 * inline adds, not atomic: exact while the guest runs one thread (edgesieve detect does).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-plugin.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
    uint64_t vaddr;
    uint64_t insns;
    uint64_t execs;
    struct block *next;
};

static struct block *blocks;
static const char *outfile = "hotblocks.txt";

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = calloc(1, sizeof *b);
    (void)id;
    if (!b) {
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->insns = qemu_plugin_tb_n_insns(tb);
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    FILE *f = fopen(outfile, "w");
    (void)id;
    (void)udata;
    if (!f) {
        fprintf(stderr, "hotblocks: cannot write %s\n", outfile);
        return;
    }
    for (struct block *b = blocks; b; b = b->next) {
        if (b->execs) {
            fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->vaddr, b->insns, b->execs);
        }
    }
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    if (info->version.min > QEMU_PLUGIN_VERSION || info->version.cur < QEMU_PLUGIN_VERSION) {
        fprintf(stderr, "hotblocks: QEMU plugin API %d..%d does not cover %d\n",
                info->version.min, info->version.cur, QEMU_PLUGIN_VERSION);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "outfile=", 8) == 0) {
            outfile = argv[i] + 8;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
