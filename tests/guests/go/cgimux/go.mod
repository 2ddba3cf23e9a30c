module platform.test/guests/cgimux

go 1.24
