/* common/main.c: `weir <role>` dispatch. Filled in as the roles land. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "version") == 0) {
        printf("weir %s\n", WEIR_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: weir gateway|sidecar|iptables|certs|validate|version ...\n");
    return 2;
}
