/*
 * main.c - `tokenmeter <subcommand>`: dispatch only; the work lives in the
 * cmd_*.c files and the modules they wire together.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "config/config.h"

#ifndef TM_VERSION
#define TM_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "tokenmeter %s - GPU cost per token, metered from Kafka into MongoDB\n\n"
            "usage: tokenmeter <command> [options]\n\n"
            "commands:\n"
            "  produce   replay a request trace (Azure CSV, Mooncake JSONL) or JSON lines\n"
            "            from stdin as token events on Kafka\n"
            "  process   consume token events, meter them per GPU and window, write MongoDB\n"
            "  report    print cost per token per host, GPU and model from MongoDB\n"
            "  gpu       read the GPUs once (NVML, nvidia-smi or seed) and print them\n"
            "  version   print the version\n\n"
            "`tokenmeter <command> --help` lists the command's options.\n\n",
            TM_VERSION);
    tm_config_usage(out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return TM_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "produce") == 0)
        return tm_cmd_produce(argc - 1, argv + 1);
    if (strcmp(cmd, "process") == 0)
        return tm_cmd_process(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0)
        return tm_cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "gpu") == 0)
        return tm_cmd_gpu(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tokenmeter %s\n", TM_VERSION);
        return TM_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return TM_EXIT_OK;
    }
    fprintf(stderr, "tokenmeter: unknown command \"%s\" (try tokenmeter --help)\n", cmd);
    return TM_EXIT_USAGE;
}
