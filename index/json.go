package index

import (
	"encoding/json"
	"fmt"
)

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cannot encode %T: %w", v, err)
	}
	return append(b, '\n'), nil
}
