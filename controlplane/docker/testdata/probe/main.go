// Command probe is the docker driver tests' network probe, run in a FROM-scratch container that
// shares a cell container's network namespace: `probe host:port` opens a TCP connection and exits
// 0 if it succeeds within 1.5 s, 1 otherwise, printing the outcome.
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: probe host:port")
		os.Exit(2)
	}
	c, err := net.DialTimeout("tcp", os.Args[1], 1500*time.Millisecond)
	if err != nil {
		fmt.Println("unreachable:", err)
		os.Exit(1)
	}
	c.Close()
	fmt.Println("reachable")
}
