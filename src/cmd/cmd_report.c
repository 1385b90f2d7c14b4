/* cmd_report.c - placeholder until the subcommand lands. */
#include <stdio.h>
#include "cmd/cmd.h"
int tm_cmd_report(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tokenmeter report: not built yet\n");
    return TM_EXIT_FAILURE;
}
