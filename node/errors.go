package node

import (
	"errors"

	"go.uber.org/dig"
)

// ConfigError is a startup failure caused by one setting: which setting,
// what is wrong with it and how to fix it. Setting is the TOML key, dotted
// below its section ("key_file", "chain.url", "p2p.listen_addrs"); the
// command line adds the flag and environment variable that set it.
type ConfigError struct {
	Setting string
	Problem string
	Fix     string // empty when the problem says it all
}

func (e *ConfigError) Error() string {
	s := e.Setting + ": " + e.Problem
	if e.Fix != "" {
		s += "; fix: " + e.Fix
	}
	return s
}

// settingError returns a ConfigError for setting.
func settingError(setting, problem, fix string) error {
	return &ConfigError{Setting: setting, Problem: problem, Fix: fix}
}

// plainError marks an error that says what is wrong without naming one
// setting: New and Start return it as is, without the trail of
// constructors fx adds.
type plainError struct{ err error }

func (e plainError) Error() string { return e.err.Error() }
func (e plainError) Unwrap() error { return e.err }

// plain marks err (nil stays nil).
func plain(err error) error {
	if err == nil {
		return nil
	}
	return plainError{err}
}

// rootCause strips what fx wraps around a constructor's or hook's error
// ("could not build arguments for function …: failed to build …"): the
// operator needs the cause, not the dependency path to it.
func rootCause(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ce
	}
	var pe plainError
	if errors.As(err, &pe) {
		return pe.err
	}
	return dig.RootCause(err)
}
