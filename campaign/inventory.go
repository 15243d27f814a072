package campaign

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/prereg/prereg/region"
)

// InventoryConfig sizes a synthetic clinic inventory, the one the
// simulator and the example campaign in campaigns/ are built with.
type InventoryConfig struct {
	// Seed makes the inventory reproducible.
	Seed uint64
	// Clinics is the number of clinics; 14,000 (Korea's 2021 count of
	// contracted vaccination sites, in round figures) when 0.
	Clinics int
	// CapacityScale multiplies every clinic's capacity; 1 when 0.
	CapacityScale float64
}

// DefaultClinics is the size of the realistic inventory.
const DefaultClinics = 14_000

// Inventory generates a clinic inventory over the 252 regions of package
// region: every region has its public health centre (보건소, the largest
// site), and the other clinics are spread in proportion to the region's
// 2021 population (largest remainders), scattered a few kilometres around
// its centre. Every tenth is a vaccination centre (예방접종센터), the rest
// contracted clinics (위탁의료기관). Capacities are per band of a day,
// before CapacityScale: a health centre takes 30 to 60 people a band, a
// vaccination centre 15 to 30, a clinic 3 to 12. Addresses are made up
// from the region's name. The same config gives the same inventory.
func Inventory(cfg InventoryConfig) []Clinic {
	n := cmp.Or(cfg.Clinics, DefaultClinics)
	scale := cmp.Or(cfg.CapacityScale, 1)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x636c696e6963)) // "clinic"
	regions := region.All()
	counts := apportion(regions, n)
	out := make([]Clinic, 0, n)
	for i, r := range regions {
		for k := range counts[i] {
			cl := Clinic{
				ID:     fmt.Sprintf("c-%s-%03d", r.Code, k+1),
				Region: r.Code,
			}
			var capacity int
			switch {
			case k == 0:
				cl.Name = r.Name + " 보건소"
				capacity = 30 + rng.IntN(31)
				cl.Lat, cl.Lng = r.Lat, r.Lng
			case k%10 == 1:
				cl.Name = fmt.Sprintf("%s 예방접종센터 %d", r.Name, k/10+1)
				capacity = 15 + rng.IntN(16)
			default:
				cl.Name = fmt.Sprintf("%s 위탁의료기관 %d", r.Name, k-1-(k-1)/10)
				capacity = 3 + rng.IntN(10)
			}
			cl.Address = address(r, k)
			if k > 0 {
				// Within a few kilometres of the centre: 1° of latitude is
				// 111 km, of longitude 111·cos(lat) km.
				d := 4 * math.Sqrt(rng.Float64())
				a := 2 * math.Pi * rng.Float64()
				cl.Lat = r.Lat + d*math.Sin(a)/111
				cl.Lng = r.Lng + d*math.Cos(a)/(111*math.Cos(r.Lat*math.Pi/180))
			}
			cl.Lat = math.Round(cl.Lat*1e5) / 1e5
			cl.Lng = math.Round(cl.Lng*1e5) / 1e5
			cl.Capacity = max(0, int(math.Round(float64(capacity)*scale)))
			out = append(out, cl)
		}
	}
	return out
}

// apportion splits n clinics over the regions: one each, the rest in
// proportion to population by largest remainders.
func apportion(regions []region.Region, n int) []int {
	counts := make([]int, len(regions))
	if n <= 0 {
		return counts
	}
	if n < len(regions) {
		// Fewer clinics than regions: the most populous regions get one.
		idx := make([]int, len(regions))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(regions[b].Population, regions[a].Population) })
		for _, i := range idx[:n] {
			counts[i] = 1
		}
		return counts
	}
	total := 0
	for _, r := range regions {
		total += r.Population
	}
	rest := n - len(regions)
	type rem struct {
		i    int
		frac float64
	}
	rems := make([]rem, len(regions))
	given := 0
	for i, r := range regions {
		share := float64(rest) * float64(r.Population) / float64(total)
		counts[i] = 1 + int(share)
		given += int(share)
		rems[i] = rem{i, share - math.Floor(share)}
	}
	slices.SortStableFunc(rems, func(a, b rem) int { return cmp.Compare(b.frac, a.frac) })
	for k := 0; given < rest; k++ {
		counts[rems[k].i]++
		given++
	}
	return counts
}

// streets are the street names addresses are made of: common road names
// of Korean towns.
var streets = [...]string{"중앙로", "시청로", "문화로", "평화로", "번영로", "희망로", "공원로", "역전로", "대학로", "충장로", "새마을로", "동서로"}

// address makes up a plausible street address in the region for its k-th
// clinic: province, region, a road and a building number. It draws
// nothing from the generator's random numbers, so that adding addresses
// left every other field of an inventory as it was.
func address(r region.Region, k int) string {
	code, _ := strconv.Atoi(r.Code)
	street := streets[(code/10+k)%len(streets)]
	return fmt.Sprintf("%s %s %s %d", r.Sido, r.Name, street, 1+(code+k*37)%240)
}
