package flagenv_test

import (
	"flag"
	"testing"

	"messenger/infra/flagenv"
)

func TestFill(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	a := fs.String("send-rate", "1", "")
	b := fs.String("http", "x", "")
	c := fs.String("data", "d", "")
	t.Setenv("P_SEND_RATE", "7")
	t.Setenv("P_HTTP", "from-env")
	if err := fs.Parse([]string{"--http", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	given, err := flagenv.Fill(fs, "P")
	if err != nil || *a != "7" || *b != "from-flag" || *c != "d" || !given["send-rate"] || !given["http"] || given["data"] {
		t.Fatalf("%v %q %q %q %v", err, *a, *b, *c, given)
	}
	fi := flag.NewFlagSet("t", flag.ContinueOnError)
	fi.Int("n", 0, "")
	t.Setenv("P_N", "x")
	_ = fi.Parse(nil)
	if _, err := flagenv.Fill(fi, "P"); err == nil {
		t.Fatal("a bad value must be an error naming the variable")
	}
}
