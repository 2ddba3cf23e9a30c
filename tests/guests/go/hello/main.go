// Command hello is the smallest Go WAGI program: it prints a CGI response.
package main

import "os"

func main() {
	os.Stdout.WriteString("Content-Type: text/plain\r\n\r\nhello from Go\n")
}
