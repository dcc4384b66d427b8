package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"atende/cell"
)

// maxJSONDepth bounds the nesting of request bodies and frames.
const maxJSONDepth = 16

// checkJSONKeys refuses, before anything is decoded into a request or reaches a query, a JSON
// document with an object key that begins with "$" or contains "." (MongoDB operator and path
// syntax, the vectors of NoSQL operator injection per OWASP's "Testing for NoSQL Injection"),
// a NUL in a key, or nesting deeper than maxJSONDepth. It returns an invalid *cell.Error.
func checkJSONKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// stack holds, per open container, whether it is an object and whether the next string
	// token in it is a key.
	type frame struct{ object, expectKey bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				return cell.Errorf(cell.EInvalid, "malformed JSON: unexpected end")
			}
			return nil
		}
		if err != nil {
			return cell.Errorf(cell.EInvalid, "malformed JSON: %v", err)
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top >= 0 && stack[top].object {
					stack[top].expectKey = true // the container was a value
				}
				stack = append(stack, frame{object: t == '{', expectKey: t == '{'})
				if len(stack) > maxJSONDepth {
					return cell.Errorf(cell.EInvalid, "JSON nested deeper than %d levels", maxJSONDepth)
				}
			default:
				stack = stack[:top]
				if top-1 >= 0 && stack[top-1].object {
					stack[top-1].expectKey = true
				}
			}
		case string:
			if top >= 0 && stack[top].object && stack[top].expectKey {
				if strings.HasPrefix(t, "$") || strings.ContainsAny(t, ".\x00") {
					return cell.Errorf(cell.EInvalid, "JSON key %q is not allowed (keys may not start with $ or contain .)", t)
				}
				stack[top].expectKey = false
				continue
			}
			if top >= 0 && stack[top].object {
				stack[top].expectKey = true
			}
		default:
			if top >= 0 && stack[top].object {
				stack[top].expectKey = true
			}
		}
	}
}
