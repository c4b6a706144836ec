module canceltoken.invalid/bench/gopeer

go 1.19
