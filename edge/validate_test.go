package edge

import "testing"

func TestHasLoneSurrogate(t *testing.T) {
	for raw, want := range map[string]bool{
		`"plain"`:        false,
		`"\ud83d\ude00"`: false,
		`"\uD83D\uDE00"`: false,
		`"\ud800"`:       true,
		`"\udc00x"`:      true,
		`"\ud83d\u0041"`: true,
		`"\\ud800"`:      false, // an escaped backslash, then text
		`"\u00e9"`:       false,
		`"end\ud83d"`:    true,
	} {
		if got := hasLoneSurrogate([]byte(raw)); got != want {
			t.Errorf("%s: %v, want %v", raw, got, want)
		}
	}
}
