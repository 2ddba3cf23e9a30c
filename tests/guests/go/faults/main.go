// Command faults misbehaves on purpose, one way per path, to prove the host survives.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

var sink [][]byte

func main() {
	switch os.Getenv("PATH_INFO") {
	case "/loop":
		for {
		}
	case "/sleep":
		time.Sleep(time.Hour)
	case "/slow":
		time.Sleep(time.Second)
		fmt.Print("Content-Type: text/plain\r\n\r\nslow but done\n")
	case "/membomb":
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i)
			}
			sink = append(sink, b)
		}
	case "/panic":
		var m map[string]int
		m["boom"] = 1
	case "/exit":
		fmt.Fprintln(os.Stderr, "giving up with status 3")
		os.Exit(3)
	case "/garbage":
		os.Stdout.Write([]byte{0, 1, 2, 'g', 'a', 'r', 'b', 'a', 'g', 'e', 0xff, 0xfe, '\n'})
	case "/noisy":
		for i := 0; i < 10000; i++ {
			fmt.Fprintln(os.Stderr, strings.Repeat("noise ", 20), "\x1b[31m\x00")
		}
		fmt.Print("Content-Type: text/plain\r\n\r\nnoisy but fine\n")
	case "/huge":
		fmt.Print("Content-Type: text/plain\r\n\r\n")
		chunk := strings.Repeat("x", 1<<20)
		for i := 0; i < 64; i++ {
			os.Stdout.WriteString(chunk)
		}
	default:
		fmt.Print("Content-Type: text/plain\r\n\r\nok\n")
	}
}
