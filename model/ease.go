package model

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// EASE solves the closed-form item-item regression of Steck (2019),
// "Embarrassingly Shallow Autoencoders for Sparse Data": given the Gram
// matrix G = XᵀX of the user×item interaction matrix X (n×n, row-major,
// symmetric) and the L2 weight lambda, it returns B (n×n, row-major) with
// zero diagonal minimising ‖X − XB‖² + λ‖B‖²:
//
//	P = (G + λI)⁻¹,  B_ij = −P_ij / P_jj,  B_ii = 0.
//
// A user's score for item j is Σ_i x_ui·B_ij, so row i of B is the list of
// items that interest in i predicts. g is overwritten. Cost is O(n³) time
// and O(n²) memory: callers bound n.
func EASE(g []float64, n int, lambda float64) ([]float64, error) {
	if len(g) != n*n {
		return nil, fmt.Errorf("BUG: EASE gram has %d entries, want %d", len(g), n*n)
	}
	if lambda <= 0 {
		return nil, fmt.Errorf("EASE lambda must be > 0; got %v", lambda)
	}
	for i := 0; i < n; i++ {
		g[i*n+i] += lambda
	}
	sym := mat.NewSymDense(n, g)
	var chol mat.Cholesky
	if ok := chol.Factorize(sym); !ok {
		return nil, fmt.Errorf("cannot factorize EASE gram matrix (n=%d, lambda=%v): not positive definite", n, lambda)
	}
	var inv mat.SymDense
	if err := chol.InverseTo(&inv); err != nil {
		return nil, fmt.Errorf("cannot invert EASE gram matrix (n=%d): %w", n, err)
	}
	p := inv.RawSymmetric()
	b := make([]float64, n*n)
	diag := make([]float64, n)
	for j := 0; j < n; j++ {
		diag[j] = p.Data[j*p.Stride+j]
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			// The inverse is stored in the upper triangle.
			r, c := i, j
			if r > c {
				r, c = c, r
			}
			b[i*n+j] = -p.Data[r*p.Stride+c] / diag[j]
		}
	}
	return b, nil
}
