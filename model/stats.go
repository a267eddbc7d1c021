package model

import "gonum.org/v1/gonum/stat/distuv"

// ChiSquarePValue is the upper-tail probability of a χ² statistic with df
// degrees of freedom.
func ChiSquarePValue(chi2 float64, df int) float64 {
	if df <= 0 {
		return 1
	}
	return distuv.ChiSquared{K: float64(df)}.Survival(chi2)
}
