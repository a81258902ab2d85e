package cluster

import (
	"context"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/mcp"
)

var _ mcp.ImagePlanner = (*Backend)(nil)

// PlanPull resolves ref against its registry and reports what a pull would
// download; nothing is written to the image cache.
func (b *Backend) PlanPull(ctx context.Context, ref string) (*api.ImagePlan, error) {
	p, err := b.Images.PlanPull(ctx, ref)
	if err != nil {
		return nil, err
	}
	v := imagePlanView(p)
	return &v, nil
}

// PlanImport reads and checks a tarball on the host and lists its images;
// nothing is written to the image cache.
func (b *Backend) PlanImport(ctx context.Context, path string) (string, []api.ImagePlan, error) {
	format, imgs, err := b.Images.PlanImport(ctx, path)
	if err != nil {
		return "", nil, err
	}
	out := make([]api.ImagePlan, 0, len(imgs))
	for _, p := range imgs {
		out = append(out, imagePlanView(p))
	}
	return format, out, nil
}

func imagePlanView(p *image.PlannedImage) api.ImagePlan {
	v := api.ImagePlan{Ref: p.Ref, Digest: p.Digest, Size: p.Size(), DownloadBytes: p.Missing(), Layers: make([]api.PlannedLayer, 0, len(p.Layers))}
	for _, l := range p.Layers {
		v.Layers = append(v.Layers, api.PlannedLayer{Digest: l.Digest, Size: l.Size, Cached: l.Cached})
		if l.Cached {
			v.CachedLayers++
		}
	}
	return v
}
