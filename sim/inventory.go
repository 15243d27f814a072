package sim

import "github.com/prereg/prereg/campaign"

// InventoryConfig sizes a synthetic clinic inventory (campaign.Inventory).
type InventoryConfig = campaign.InventoryConfig

// DefaultClinics is the size of the realistic inventory.
const DefaultClinics = campaign.DefaultClinics

// Inventory generates the simulator's clinic inventory; campaign.Inventory
// is the one generator, shared with the example campaign.
func Inventory(cfg InventoryConfig) []campaign.Clinic { return campaign.Inventory(cfg) }
