package web

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckJSONKeys(t *testing.T) {
	cases := []struct {
		in string
		ok bool
	}{
		{`{"email":"a@b.c","password":"x"}`, true},
		{`{"body":"$ne and a.b are fine in values","n":1,"a":[{"k":"$gt"}],"o":{}}`, true},
		{`{"email":{"$ne":""}}`, false},
		{`{"$where":"1"}`, false},
		{`{"a":[{"b":{"$gt":1}}]}`, false},
		{`{"a.b":1}`, false},
		{`{"a":1,"b":{"c":[1,2,{"$in":[1]}]}}`, false},
		{`{"x":"\u0000","y":2}`, true},
		{"{\"k\\u0000\":1}", false},
		{`[1,2,3]`, true},
		{`{"a":`, false},
		{`{"a":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}`, false},
	}
	for _, c := range cases {
		if err := checkJSONKeys([]byte(c.in)); (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

// FuzzCheckJSONKeys: the guard never panics, and nothing it accepts decodes to an object with a
// key starting with "$" or containing "." or NUL.
func FuzzCheckJSONKeys(f *testing.F) {
	f.Add([]byte(`{"email":{"$ne":""}}`))
	f.Add([]byte(`{"a":[{"b":"c"}],"d":{"e":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkJSONKeys(data) != nil {
			return
		}
		var v any
		if json.Unmarshal(data, &v) != nil {
			return // the guard passes syntax it does not need to judge on to the decoder
		}
		if k, bad := forbiddenKey(v); bad {
			t.Fatalf("guard accepted key %q in %q", k, data)
		}
	})
}

// forbiddenKey walks a decoded JSON value for an object key the guard must refuse.
func forbiddenKey(v any) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00") {
				return k, true
			}
			if k, bad := forbiddenKey(child); bad {
				return k, true
			}
		}
	case []any:
		for _, child := range x {
			if k, bad := forbiddenKey(child); bad {
				return k, true
			}
		}
	}
	return "", false
}
