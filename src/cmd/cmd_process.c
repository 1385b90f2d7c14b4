/* cmd_process.c - placeholder until the subcommand lands. */
#include <stdio.h>
#include "cmd/cmd.h"
int tm_cmd_process(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tokenmeter process: not built yet\n");
    return TM_EXIT_FAILURE;
}
