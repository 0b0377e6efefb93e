package config

// Warning is something in the input that zmesh did not apply but that is
// not an error: a kind it does not know, or a setting Istio itself only
// warns about. Warnings never stop a snapshot from being accepted.
type Warning struct {
	Source  string // file and document, e.g. "policies.yaml#2"
	Message string
}

// String returns "SOURCE: MESSAGE", the form printed to users.
func (w Warning) String() string {
	if w.Source == "" {
		return w.Message
	}
	return w.Source + ": " + w.Message
}
