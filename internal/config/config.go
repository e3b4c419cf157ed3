// Package config maps flags and environment variables onto component configs, in one
// place. A value comes from its flag when given, else from the first of its environment
// variables that is set (aliases kept for existing deployments), else the component's
// default. A value that does not parse stops start-up with an error naming the variable.
package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Binder registers flags whose defaults come from the environment.
type Binder struct {
	fs     *flag.FlagSet
	lookup func(string) (string, bool)
	errs   []error
}

// NewBinder binds onto fs, reading variables with lookup (os.LookupEnv in main).
func NewBinder(fs *flag.FlagSet, lookup func(string) (string, bool)) *Binder {
	return &Binder{fs: fs, lookup: lookup}
}

// env returns the first set variable of names, and its name.
func (b *Binder) env(names []string) (string, string, bool) {
	for _, n := range names {
		if v, ok := b.lookup(n); ok && v != "" {
			return v, n, true
		}
	}
	return "", "", false
}

func usage(u string, envs []string) string {
	if len(envs) == 0 {
		return u
	}
	return fmt.Sprintf("%s (env %s)", u, strings.Join(envs, ", "))
}

// String binds a string; dst holds the default.
func (b *Binder) String(dst *string, name, help string, envs ...string) {
	if v, _, ok := b.env(envs); ok {
		*dst = v
	}
	b.fs.StringVar(dst, name, *dst, usage(help, envs))
}

// Secret binds a string whose default is never printed in usage text.
func (b *Binder) Secret(dst *string, name, help string, envs ...string) {
	if v, _, ok := b.env(envs); ok {
		*dst = v
	}
	b.fs.Func(name, usage(help, envs), func(s string) error { *dst = s; return nil })
}

// Strings binds a comma-separated list.
func (b *Binder) Strings(dst *[]string, name, help string, envs ...string) {
	if v, _, ok := b.env(envs); ok {
		*dst = SplitList(v)
	}
	b.fs.Func(name, usage(help, envs)+fmt.Sprintf(" (default %q)", strings.Join(*dst, ",")), func(s string) error {
		*dst = SplitList(s)
		return nil
	})
}

// Secrets binds a comma-separated list whose values are never printed in usage text.
func (b *Binder) Secrets(dst *[]string, name, help string, envs ...string) {
	if v, _, ok := b.env(envs); ok {
		*dst = SplitList(v)
	}
	b.fs.Func(name, usage(help, envs), func(s string) error {
		*dst = SplitList(s)
		return nil
	})
}

// Int binds an int.
func (b *Binder) Int(dst *int, name, help string, envs ...string) {
	if v, n, ok := b.env(envs); ok {
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("%s=%q is not an integer", n, v))
		} else {
			*dst = i
		}
	}
	b.fs.IntVar(dst, name, *dst, usage(help, envs))
}

// Int64 binds an int64 (sizes in bytes).
func (b *Binder) Int64(dst *int64, name, help string, envs ...string) {
	if v, n, ok := b.env(envs); ok {
		i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("%s=%q is not an integer", n, v))
		} else {
			*dst = i
		}
	}
	b.fs.Int64Var(dst, name, *dst, usage(help, envs))
}

// Duration binds a duration such as 250ms or 5m.
func (b *Binder) Duration(dst *time.Duration, name, help string, envs ...string) {
	if v, n, ok := b.env(envs); ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("%s=%q is not a duration (like 500ms or 5m)", n, v))
		} else {
			*dst = d
		}
	}
	b.fs.DurationVar(dst, name, *dst, usage(help, envs))
}

// Float64 binds a float64.
func (b *Binder) Float64(dst *float64, name, help string, envs ...string) {
	if v, n, ok := b.env(envs); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("%s=%q is not a number", n, v))
		} else {
			*dst = f
		}
	}
	b.fs.Float64Var(dst, name, *dst, usage(help, envs))
}

// Bool binds a boolean.
func (b *Binder) Bool(dst *bool, name, help string, envs ...string) {
	if v, n, ok := b.env(envs); ok {
		x, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("%s=%q is not a boolean", n, v))
		} else {
			*dst = x
		}
	}
	b.fs.BoolVar(dst, name, *dst, usage(help, envs))
}

// Err reports every environment variable that did not parse.
func (b *Binder) Err() error { return errors.Join(b.errs...) }

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
