/*
 * cmd.h - the subcommands of the one `tokenmeter` binary, and its exit codes.
 * Each takes argv with argv[0] = the subcommand name.
 */
#ifndef TM_CMD_H
#define TM_CMD_H

enum tm_exit {
    TM_EXIT_OK = 0,
    TM_EXIT_FAILURE = 1, /* runtime failure (e.g. undelivered messages) */
    TM_EXIT_USAGE = 2,   /* bad setting or argument */
    TM_EXIT_UNAVAILABLE = 3, /* a dependency (Kafka, MongoDB) could not be reached */
};

int tm_cmd_produce(int argc, char **argv);
int tm_cmd_process(int argc, char **argv);
int tm_cmd_report(int argc, char **argv);
int tm_cmd_gpu(int argc, char **argv);

#endif
