module platform.test/guests/faults

go 1.24
