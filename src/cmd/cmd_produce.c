/* cmd_produce.c - placeholder until the subcommand lands. */
#include <stdio.h>
#include "cmd/cmd.h"
int tm_cmd_produce(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tokenmeter produce: not built yet\n");
    return TM_EXIT_FAILURE;
}
