package main

import "fmt"

func runGen(args []string) error { return fmt.Errorf("gen: not yet wired") }
