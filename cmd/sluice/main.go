// Command sluice is the Sluice rate-limiting gateway. See package gateway.
package main

import (
	"os"

	"github.com/sluice-gateway/sluice/gateway"
)

func main() {
	os.Exit(gateway.Main(os.Args[1:], os.Stdout, os.Stderr))
}
