// Command faults misbehaves on purpose, one way per path, to prove the host survives.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

var sink [][]byte

// recurse goes deeper until Go's goroutine stack limit stops it.
func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	return recurse(n+1) + int(pad[0])
}

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
	case "/recurse":
		debug.SetMaxStack(8 << 20)
		fmt.Println(recurse(0))
	case "/stdout-flood":
		// Ignores write errors: only the host can stop it.
		chunk := strings.Repeat("o", 1<<16)
		for {
			os.Stdout.WriteString(chunk)
		}
	case "/stderr-flood":
		chunk := strings.Repeat("e", 1<<10) + "\n"
		for {
			os.Stderr.WriteString(chunk)
		}
	case "/ignore-body":
		fmt.Print("Content-Type: text/plain\r\n\r\nbody ignored\n")
	case "/slow-read":
		buf := make([]byte, 1024)
		n := 0
		for {
			k, err := os.Stdin.Read(buf)
			n += k
			if err == io.EOF {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Printf("Content-Type: text/plain\r\n\r\nread %d bytes slowly\n", n)
	case "/spin-sleep":
		// A host call (poll_oneoff) in a tight loop.
		for {
			time.Sleep(time.Microsecond)
		}
	case "/big":
		fmt.Print("Content-Type: text/plain\r\n\r\n")
		os.Stdout.WriteString(strings.Repeat("b", 4<<20))
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
