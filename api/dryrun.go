package api

// Plan actions of the node scheduling tools' dry runs.
const (
	ActionDrain          = "drain"
	ActionSetEligibility = "set_eligibility"
)
