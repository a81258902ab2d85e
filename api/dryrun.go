package api

// Plan actions of the node scheduling tools' dry runs.
const (
	ActionDrain          = "drain"
	ActionSetEligibility = "set_eligibility"
)

// PullImageResult is the output of pull_image: the cached image, or on a
// dry run the image as the registry has it, with the plan.
type PullImageResult struct {
	Image
	Plan *ImagePlan `json:"plan,omitempty" jsonschema:"set on a dry run: what a pull would download; nothing was downloaded"`
}

// ImportImageResult is the output of import_image: the images imported,
// or on a dry run the images the tarball holds, with the plan.
type ImportImageResult struct {
	ImageList
	Format string      `json:"format,omitempty" jsonschema:"on a dry run: docker-save or oci-layout"`
	Plan   []ImagePlan `json:"plan,omitempty" jsonschema:"set on a dry run: each image the tarball holds, checked; nothing was imported"`
}

// ImagePlan is one image a pull or import would bring into the cache.
type ImagePlan struct {
	Ref           string         `json:"ref"`
	Digest        string         `json:"digest" jsonschema:"the manifest digest the reference resolves to"`
	Size          int64          `json:"size" jsonschema:"compressed size of all layers in bytes"`
	Layers        []PlannedLayer `json:"layers"`
	CachedLayers  int            `json:"cached_layers" jsonschema:"layers already in the cache"`
	DownloadBytes int64          `json:"download_bytes" jsonschema:"compressed bytes of the layers not cached yet (what a pull would download)"`
}

// PlannedLayer is one layer of an ImagePlan.
type PlannedLayer struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size" jsonschema:"compressed bytes"`
	Cached bool   `json:"cached"`
}
