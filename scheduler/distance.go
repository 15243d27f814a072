package scheduler

// maxDistanceKm is the run's bound on the region fallback: the
// allocator's when configured (prereg allocate --max-distance-km), else
// the campaign's (campaign.Allocation.MaxDistanceKm; 0 there is any
// distance). A registration with no room within it stays unassigned
// (no_capacity) and rolls into the next round instead of being sent
// across the country.
func (j *Job) maxDistanceKm() float64 {
	if j.a.cfg.MaxDistanceKm > 0 {
		return j.a.cfg.MaxDistanceKm
	}
	return j.c.Allocation.MaxDistanceKm
}
