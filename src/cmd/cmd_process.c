/*
 * cmd_process.c - `tokenmeter process`: settings, signals, then tm_proc_run().
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "config/config.h"
#include "proc/proc.h"

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int tm_cmd_process(int argc, char **argv)
{
    struct tm_config cfg;
    struct tm_error err;
    static const struct option extra[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tokenmeter process [--setting VALUE ...]\n\n"
                   "Consume token events of KAFKA_TOPIC in consumer group KAFKA_GROUP, meter\n"
                   "them per GPU in WINDOW_SECONDS event-time windows into MongoDB\n"
                   "token_usage, sample the GPUs into gpu_metrics, and serve /health,\n"
                   "/gpu/info and /metrics on HTTP_LISTEN.\n\n");
            tm_config_usage(stdout);
            return TM_EXIT_OK;
        }
    if (tm_config_init(&cfg, &err) < 0 ||
        tm_config_parse_args(&cfg, argc, argv, extra, NULL, NULL, &err) < 0 ||
        tm_config_no_operands(argc, argv, &err) < 0) {
        fprintf(stderr, "tokenmeter process: %s\n", err.msg);
        tm_config_free(&cfg);
        return TM_EXIT_USAGE;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = tm_proc_run(&cfg, &stop_flag);
    tm_config_free(&cfg);
    return rc;
}
