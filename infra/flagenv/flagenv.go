// Package flagenv gives every flag of a set an environment variable:
// PREFIX_<FLAG>, upper case, "-" as "_". A flag on the command line wins.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Name is the environment variable of flag name.
func Name(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Fill sets every flag of fs not given on the command line from its
// environment variable, and returns the flags given either way. Call it
// after fs.Parse.
func Fill(fs *flag.FlagSet, prefix string) (map[string]bool, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := Name(prefix, f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
				return
			}
			given[f.Name] = true
		}
	})
	return given, err
}
