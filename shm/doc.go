// Package shm maps files of /dev/shm into memory, waits and wakes on futex
// words that live inside such mappings, and identifies processes by pid and
// start time.
//
// It promises: files are created exclusively (never clobbered) with the mode
// asked for and with every page already faulted in; futexes are shared (they
// work across processes mapping the same file); a Process is alive only while
// its pid names the same process that was recorded, so a reused pid is dead.
package shm
