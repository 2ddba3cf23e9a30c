module platform.test/guests/hello

go 1.24
