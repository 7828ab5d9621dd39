//go:build !linux

package kmod

import "errors"

func insertModule(string) error { return errors.New("kmod: loading modules needs Linux") }
