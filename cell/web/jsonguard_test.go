package web

import "testing"

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

// FuzzCheckJSONKeys: the guard never panics and never lets a "$" key through.
func FuzzCheckJSONKeys(f *testing.F) {
	f.Add([]byte(`{"email":{"$ne":""}}`))
	f.Add([]byte(`{"a":[{"b":"c"}],"d":{"e":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkJSONKeys(data)
	})
}
