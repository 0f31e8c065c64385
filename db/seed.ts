/**
 * Deterministic catalogue seed (Node only: pg + drizzle-orm/node-postgres).
 *
 *   npx tsx db/seed.ts                       # 40 categories, 5000 products, 300 users
 *   npx tsx db/seed.ts --products=20000 --force
 *
 * The same options always produce the same rows (names, SKUs, prices, stock,
 * emails, and — on an empty or --force'd database — the same ids), so cache
 * tests and benchmarks can hard-code expectations.
 */
import { count, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import { Pool } from "pg";
import { describeTarget, explainPgError, isMainModule, redact, scriptDatabaseUrl } from "./migrate";
import { prng } from "./prng";
import * as schema from "./schema";
import {
  categories,
  type NewCategory,
  type NewProduct,
  type NewUser,
  products,
  users,
} from "./schema";

export interface SeedOptions {
  /** Default 40. */
  categories?: number;
  /** Default 5000. */
  products?: number;
  /** Default 300. */
  users?: number;
  log?: (line: string) => void;
  /** Wipe products, categories and users (ids restart at 1) and seed again. */
  force?: boolean;
}

export interface SeedResult {
  /** False when the database already held products and `force` was not set. */
  seeded: boolean;
  /** Rows in each table after the call. */
  categories: number;
  products: number;
  users: number;
}

// 500 rows x 8 columns stays far below Postgres' 65535 bind-parameter limit
// while keeping round trips few.
const BATCH_SIZE = 500;

// Serialises concurrent seeders (parallel test workers, two terminals) so the
// "already seeded?" check and the inserts are atomic with respect to each other.
const SEED_LOCK_KEY = 727_002;

// Separate streams per entity so changing one count does not reshuffle the
// others' data.
const SEEDS = { categories: 0x5eed_ca7, products: 0x5eed_9d0, users: 0x5eed_05e } as const;

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
  }
  float(): number {
    return this.next();
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error("pick() from an empty list");
    return item;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

interface Department {
  name: string;
  blurb: string;
  nouns: readonly string[];
  /** Typical shelf price range in whole dollars. */
  price: readonly [number, number];
}

const DEPARTMENTS: readonly Department[] = [
  {
    name: "Kitchen Tools",
    blurb: "Utensils and gadgets for everyday cooking",
    nouns: ["Chef's Knife", "Cutting Board", "Whisk", "Spatula", "Peeler", "Tongs"],
    price: [6, 140],
  },
  {
    name: "Cookware",
    blurb: "Pots, pans and bakeware",
    nouns: ["Skillet", "Saucepan", "Dutch Oven", "Stockpot", "Wok", "Sheet Pan"],
    price: [18, 320],
  },
  {
    name: "Coffee & Tea",
    blurb: "Brewing gear for the first cup of the day",
    nouns: [
      "Pour-Over Dripper",
      "French Press",
      "Burr Grinder",
      "Kettle",
      "Tea Infuser",
      "Espresso Tamper",
    ],
    price: [9, 260],
  },
  {
    name: "Tableware",
    blurb: "Plates, bowls and glasses",
    nouns: ["Dinner Plate Set", "Serving Bowl", "Tumbler Set", "Mug", "Platter", "Flatware Set"],
    price: [8, 180],
  },
  {
    name: "Bedding",
    blurb: "Sheets, duvets and pillows",
    nouns: ["Sheet Set", "Duvet Cover", "Pillow", "Weighted Blanket", "Mattress Topper", "Quilt"],
    price: [19, 420],
  },
  {
    name: "Bath",
    blurb: "Towels and bathroom essentials",
    nouns: [
      "Bath Towel",
      "Bath Mat",
      "Shower Curtain",
      "Soap Dispenser",
      "Robe",
      "Toothbrush Holder",
    ],
    price: [7, 120],
  },
  {
    name: "Home Decor",
    blurb: "Finishing touches for every room",
    nouns: ["Throw Pillow", "Vase", "Wall Mirror", "Picture Frame", "Candle", "Table Lamp"],
    price: [9, 240],
  },
  {
    name: "Furniture",
    blurb: "Seating, tables and storage",
    nouns: ["Side Table", "Bookshelf", "Desk", "Lounge Chair", "Bar Stool", "Console Table"],
    price: [60, 1400],
  },
  {
    name: "Lighting",
    blurb: "Lamps, bulbs and fixtures",
    nouns: [
      "Floor Lamp",
      "Pendant Light",
      "LED Bulb 4-Pack",
      "Desk Lamp",
      "String Lights",
      "Wall Sconce",
    ],
    price: [8, 380],
  },
  {
    name: "Storage",
    blurb: "Bins, baskets and organisers",
    nouns: [
      "Storage Bin",
      "Woven Basket",
      "Drawer Organizer",
      "Shoe Rack",
      "Closet System",
      "Hanging Shelf",
    ],
    price: [7, 220],
  },
  {
    name: "Cleaning",
    blurb: "Keep it tidy",
    nouns: [
      "Microfiber Cloth Pack",
      "Spray Mop",
      "Scrub Brush",
      "Dustpan Set",
      "Cordless Vacuum",
      "Lint Roller",
    ],
    price: [5, 420],
  },
  {
    name: "Laundry",
    blurb: "Wash, dry and fold",
    nouns: [
      "Laundry Hamper",
      "Drying Rack",
      "Ironing Board",
      "Garment Steamer",
      "Detergent Pods",
      "Wool Dryer Balls",
    ],
    price: [6, 160],
  },
  {
    name: "Garden",
    blurb: "Tools and supplies for growing things",
    nouns: [
      "Pruning Shears",
      "Garden Hose",
      "Raised Bed",
      "Watering Can",
      "Trowel",
      "Kneeling Pad",
    ],
    price: [6, 260],
  },
  {
    name: "Outdoor Living",
    blurb: "Patio furniture and grills",
    nouns: ["Patio Chair", "Charcoal Grill", "Fire Pit", "Hammock", "Outdoor Rug", "Umbrella"],
    price: [25, 900],
  },
  {
    name: "Camping",
    blurb: "Gear for nights outside",
    nouns: ["Tent", "Sleeping Bag", "Camp Stove", "Headlamp", "Trekking Poles", "Camp Chair"],
    price: [12, 520],
  },
  {
    name: "Cycling",
    blurb: "Bikes, parts and accessories",
    nouns: [
      "Bike Helmet",
      "Bike Light Set",
      "Floor Pump",
      "Bike Lock",
      "Saddle Bag",
      "Water Bottle Cage",
    ],
    price: [8, 260],
  },
  {
    name: "Running",
    blurb: "Shoes and gear for the road and trail",
    nouns: [
      "Running Shoe",
      "Running Vest",
      "Hydration Belt",
      "Running Socks",
      "Reflective Jacket",
      "GPS Watch Band",
    ],
    price: [10, 240],
  },
  {
    name: "Fitness",
    blurb: "Home workout equipment",
    nouns: [
      "Yoga Mat",
      "Adjustable Dumbbell",
      "Resistance Band Set",
      "Kettlebell",
      "Foam Roller",
      "Jump Rope",
    ],
    price: [9, 480],
  },
  {
    name: "Swim",
    blurb: "Swimwear and pool gear",
    nouns: ["Swim Goggles", "Swim Cap", "Kickboard", "Beach Towel", "Rash Guard", "Swim Fins"],
    price: [8, 90],
  },
  {
    name: "Men's Apparel",
    blurb: "Everyday clothing for men",
    nouns: [
      "Oxford Shirt",
      "Chino Pant",
      "Crewneck Sweater",
      "Denim Jacket",
      "Polo Shirt",
      "Rain Shell",
    ],
    price: [18, 260],
  },
  {
    name: "Women's Apparel",
    blurb: "Everyday clothing for women",
    nouns: ["Linen Dress", "Cardigan", "Wide-Leg Trouser", "Blouse", "Trench Coat", "Knit Top"],
    price: [18, 280],
  },
  {
    name: "Kids' Apparel",
    blurb: "Clothing that survives the playground",
    nouns: ["Hoodie", "Jogger", "Raincoat", "T-Shirt 3-Pack", "Pajama Set", "Snow Pant"],
    price: [9, 90],
  },
  {
    name: "Footwear",
    blurb: "Shoes, boots and sandals",
    nouns: ["Leather Sneaker", "Chelsea Boot", "Slide Sandal", "Loafer", "Hiking Boot", "Slipper"],
    price: [24, 260],
  },
  {
    name: "Bags",
    blurb: "Backpacks, totes and luggage",
    nouns: [
      "Backpack",
      "Tote Bag",
      "Carry-On Suitcase",
      "Duffel Bag",
      "Crossbody Bag",
      "Laptop Sleeve",
    ],
    price: [18, 420],
  },
  {
    name: "Accessories",
    blurb: "Hats, belts and small leather goods",
    nouns: ["Leather Belt", "Wallet", "Beanie", "Sunglasses", "Scarf", "Baseball Cap"],
    price: [12, 180],
  },
  {
    name: "Jewelry",
    blurb: "Everyday pieces",
    nouns: [
      "Pendant Necklace",
      "Hoop Earrings",
      "Stacking Ring",
      "Cuff Bracelet",
      "Stud Earrings",
      "Chain Bracelet",
    ],
    price: [15, 480],
  },
  {
    name: "Watches",
    blurb: "Analog and smart watches",
    nouns: [
      "Field Watch",
      "Dive Watch",
      "Smartwatch",
      "Watch Strap",
      "Dress Watch",
      "Watch Winder",
    ],
    price: [25, 900],
  },
  {
    name: "Audio",
    blurb: "Headphones and speakers",
    nouns: [
      "Wireless Earbuds",
      "Over-Ear Headphones",
      "Bluetooth Speaker",
      "Soundbar",
      "Turntable",
      "Headphone Stand",
    ],
    price: [19, 650],
  },
  {
    name: "Computers",
    blurb: "Laptops, monitors and peripherals",
    nouns: [
      "Mechanical Keyboard",
      "Wireless Mouse",
      "27-inch Monitor",
      "USB-C Hub",
      "Laptop Stand",
      "Webcam",
    ],
    price: [15, 1300],
  },
  {
    name: "Phones & Tablets",
    blurb: "Cases, chargers and accessories",
    nouns: [
      "Phone Case",
      "Screen Protector",
      "Fast Charger",
      "Tablet Stand",
      "Power Bank",
      "Charging Cable",
    ],
    price: [8, 120],
  },
  {
    name: "Smart Home",
    blurb: "Connected devices",
    nouns: [
      "Smart Plug",
      "Video Doorbell",
      "Smart Thermostat",
      "Mesh Wi-Fi Router",
      "Motion Sensor",
      "Smart Bulb",
    ],
    price: [15, 320],
  },
  {
    name: "Cameras",
    blurb: "Cameras, lenses and tripods",
    nouns: [
      "Mirrorless Camera",
      "Prime Lens",
      "Tripod",
      "Camera Strap",
      "Memory Card",
      "Lens Filter",
    ],
    price: [12, 1900],
  },
  {
    name: "Gaming",
    blurb: "Controllers and gaming gear",
    nouns: [
      "Wireless Controller",
      "Gaming Headset",
      "Gaming Mouse Pad",
      "Controller Charging Dock",
      "Capture Card",
      "Gaming Chair",
    ],
    price: [12, 420],
  },
  {
    name: "Books",
    blurb: "Fiction, non-fiction and reference",
    nouns: [
      "Hardcover Novel",
      "Cookbook",
      "Field Guide",
      "Graphic Novel",
      "Travel Guide",
      "Poetry Collection",
    ],
    price: [9, 60],
  },
  {
    name: "Stationery",
    blurb: "Notebooks, pens and desk supplies",
    nouns: [
      "Dot Grid Notebook",
      "Fountain Pen",
      "Gel Pen Set",
      "Desk Planner",
      "Sticky Notes",
      "Pencil Case",
    ],
    price: [3, 90],
  },
  {
    name: "Art Supplies",
    blurb: "Paints, brushes and sketchbooks",
    nouns: [
      "Watercolor Set",
      "Sketchbook",
      "Brush Set",
      "Acrylic Paint Set",
      "Easel",
      "Colored Pencils",
    ],
    price: [6, 180],
  },
  {
    name: "Toys",
    blurb: "Play for every age",
    nouns: [
      "Building Block Set",
      "Wooden Puzzle",
      "Plush Bear",
      "Remote-Control Car",
      "Play Kitchen",
      "Marble Run",
    ],
    price: [8, 160],
  },
  {
    name: "Board Games",
    blurb: "Games for the table",
    nouns: [
      "Strategy Board Game",
      "Card Game",
      "Party Game",
      "Cooperative Game",
      "Chess Set",
      "Jigsaw Puzzle 1000pc",
    ],
    price: [9, 90],
  },
  {
    name: "Baby",
    blurb: "Essentials for the first years",
    nouns: [
      "Swaddle Blanket",
      "Baby Carrier",
      "High Chair",
      "Bottle Set",
      "Changing Pad",
      "Teether",
    ],
    price: [8, 320],
  },
  {
    name: "Pet Supplies",
    blurb: "For dogs, cats and their people",
    nouns: ["Dog Leash", "Cat Tree", "Pet Bed", "Chew Toy", "Food Bowl", "Grooming Brush"],
    price: [6, 220],
  },
  {
    name: "Pantry",
    blurb: "Shelf-stable food and snacks",
    nouns: ["Olive Oil", "Sea Salt", "Pasta 6-Pack", "Trail Mix", "Maple Syrup", "Hot Sauce"],
    price: [3, 45],
  },
  {
    name: "Personal Care",
    blurb: "Skin, hair and grooming",
    nouns: [
      "Face Moisturizer",
      "Shampoo",
      "Electric Toothbrush",
      "Beard Trimmer",
      "Hair Dryer",
      "Sunscreen",
    ],
    price: [6, 240],
  },
  {
    name: "Health",
    blurb: "Everyday wellness",
    nouns: [
      "First Aid Kit",
      "Digital Thermometer",
      "Heating Pad",
      "Massage Gun",
      "Pill Organizer",
      "Humidifier",
    ],
    price: [6, 260],
  },
  {
    name: "Tools & Hardware",
    blurb: "For fixing and building",
    nouns: [
      "Cordless Drill",
      "Screwdriver Set",
      "Tape Measure",
      "Socket Set",
      "Stud Finder",
      "Utility Knife",
    ],
    price: [6, 320],
  },
  {
    name: "Automotive",
    blurb: "Car care and accessories",
    nouns: [
      "Dash Cam",
      "Tire Inflator",
      "Car Phone Mount",
      "Jump Starter",
      "Seat Organizer",
      "Microfiber Wash Mitt",
    ],
    price: [9, 220],
  },
  {
    name: "Music",
    blurb: "Instruments and accessories",
    nouns: ["Acoustic Guitar", "Ukulele", "Guitar Strings", "Digital Piano", "Capo", "Music Stand"],
    price: [6, 900],
  },
];

const BRANDS = [
  "Northwind",
  "Alder & Oak",
  "Brightline",
  "Cobalt",
  "Driftwood",
  "Everly",
  "Fieldcraft",
  "Granite Peak",
  "Harbor",
  "Ironbark",
  "Juniper",
  "Kestrel",
  "Lumen",
  "Meridian",
  "Nimbus",
  "Orchard",
  "Pinecrest",
  "Quarry",
  "Redwood",
  "Summit",
  "Tidewater",
  "Umber",
  "Vantage",
  "Willow",
  "Yarrow",
  "Zephyr",
] as const;

const ADJECTIVES = [
  "Classic",
  "Compact",
  "Everyday",
  "Lightweight",
  "Premium",
  "Heritage",
  "Pro",
  "Essential",
  "Modern",
  "Rugged",
  "Slim",
  "Deluxe",
  "Travel",
  "Signature",
  "Ultra",
  "Studio",
] as const;

const VARIANTS = [
  "Black",
  "White",
  "Slate",
  "Navy",
  "Olive",
  "Sand",
  "Charcoal",
  "Terracotta",
  "Sage",
  "Oat",
  "Walnut",
  "Brass",
  "Small",
  "Medium",
  "Large",
  "XL",
] as const;

const SELLING_POINTS = [
  "Built to last with reinforced stitching and tested materials.",
  "Backed by a two-year warranty.",
  "Designed in small batches and inspected by hand.",
  "Easy to clean and dishwasher safe where noted.",
  "Ships in plastic-free, recyclable packaging.",
  "A customer favourite for everyday use.",
  "Lightweight without giving up durability.",
  "Pairs well with the rest of the collection.",
] as const;

const FIRST_NAMES = [
  "Ada",
  "Alan",
  "Amara",
  "Ben",
  "Carmen",
  "Chen",
  "Dara",
  "Diego",
  "Elena",
  "Farah",
  "Felix",
  "Grace",
  "Hana",
  "Ivan",
  "Jonas",
  "Kai",
  "Leila",
  "Luca",
  "Maya",
  "Mateo",
  "Nadia",
  "Noah",
  "Omar",
  "Priya",
  "Quinn",
  "Rosa",
  "Sam",
  "Sofia",
  "Tariq",
  "Uma",
  "Victor",
  "Wen",
  "Yusuf",
  "Zoe",
] as const;

const LAST_NAMES = [
  "Abbott",
  "Bauer",
  "Castillo",
  "Dubois",
  "Eriksen",
  "Fischer",
  "Garcia",
  "Haddad",
  "Ito",
  "Jensen",
  "Kowalski",
  "Lopez",
  "Morgan",
  "Nakamura",
  "Okafor",
  "Petrov",
  "Quintero",
  "Rossi",
  "Singh",
  "Tanaka",
  "Umarov",
  "Varga",
  "Williams",
  "Xu",
  "Yilmaz",
  "Zhang",
] as const;

function slugify(name: string): string {
  return name
    .toLowerCase()
    .replace(/&/g, "and")
    .replace(/'/g, "")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

interface CategorySpec extends NewCategory {
  slug: string;
  department: Department;
}

function buildCategories(n: number): CategorySpec[] {
  const rng = new Rng(SEEDS.categories);
  const out: CategorySpec[] = [];
  for (let i = 0; i < n; i++) {
    const department = DEPARTMENTS[i % DEPARTMENTS.length] as Department;
    // Past the list, cycle it with a numbered edition so slugs stay unique.
    const edition = Math.floor(i / DEPARTMENTS.length);
    const name = edition === 0 ? department.name : `${department.name} ${edition + 1}`;
    out.push({
      slug: slugify(name),
      name,
      description: `${department.blurb}. ${rng.pick(SELLING_POINTS)}`,
      department,
    });
  }
  return out;
}

/** Shelf-style price: log-uniform in the department's range, ending .99/.49/.00. */
function priceCents(rng: Rng, [min, max]: readonly [number, number]): number {
  const dollars = Math.max(
    1,
    Math.round(Math.exp(Math.log(min) + rng.float() * (Math.log(max) - Math.log(min)))),
  );
  const roll = rng.float();
  if (roll < 0.7) return dollars * 100 - 1; // 19.99
  if (roll < 0.85) return dollars * 100 - 51; // 19.49
  return dollars * 100; // 20.00
}

/** Mostly modest stock, some sold out (to exercise reservation failures), a few bulk items. */
function stockLevel(rng: Rng): number {
  const roll = rng.float();
  if (roll < 0.06) return 0;
  if (roll < 0.2) return rng.int(1, 9);
  if (roll < 0.9) return rng.int(10, 250);
  return rng.int(251, 5000);
}

function buildProduct(
  rng: Rng,
  index: number,
  cats: readonly { id: number; slug: string; department: Department }[],
): NewProduct {
  const cat = rng.pick(cats);
  const dept = cat.department;
  const brand = rng.pick(BRANDS);
  const noun = rng.pick(dept.nouns);
  const adjective = rng.pick(ADJECTIVES);
  const variant = rng.chance(0.6) ? `, ${rng.pick(VARIANTS)}` : "";
  const prefix = slugify(dept.name).replace(/-/g, "").slice(0, 3).toUpperCase();
  return {
    // The running index makes SKUs unique by construction; the prefix makes
    // them readable in logs ("KIT-000123").
    sku: `${prefix}-${String(index + 1).padStart(6, "0")}`,
    name: `${brand} ${adjective} ${noun}${variant}`,
    description: `${adjective} ${noun.toLowerCase()} by ${brand}. ${rng.pick(SELLING_POINTS)} ${rng.pick(SELLING_POINTS)}`,
    categoryId: cat.id,
    priceCents: priceCents(rng, dept.price),
    currency: "USD",
    stock: stockLevel(rng),
  };
}

function buildUser(rng: Rng, index: number): NewUser {
  const first = rng.pick(FIRST_NAMES);
  const last = rng.pick(LAST_NAMES);
  const roll = rng.float();
  return {
    // Index suffix keeps emails unique; example.com is reserved (RFC 2606), so
    // a stray notification can never reach a real person.
    email: `${first}.${last}.${index + 1}@example.com`.toLowerCase(),
    name: `${first} ${last}`,
    tier: roll < 0.8 ? "standard" : roll < 0.95 ? "premium" : "enterprise",
  };
}

function checkCount(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`seed option "${name}" must be a non-negative integer (got ${value})`);
  }
  return value;
}

export async function seedDatabase(
  databaseUrl: string,
  opts: SeedOptions = {},
): Promise<SeedResult> {
  const want = {
    categories: checkCount("categories", opts.categories ?? 40),
    products: checkCount("products", opts.products ?? 5000),
    users: checkCount("users", opts.users ?? 300),
  };
  if (want.products > 0 && want.categories === 0) {
    throw new Error("seed: products need at least one category (categories must be >= 1)");
  }
  const log = opts.log ?? (() => undefined);
  const target = describeTarget(databaseUrl);
  const doing = `seeding database "${target.database}"`;

  const pool = new Pool({
    connectionString: databaseUrl,
    max: 1,
    connectionTimeoutMillis: 10_000,
    application_name: "edgecache-seed",
  });
  // An idle client erroring (server restart) must not crash the process.
  pool.on("error", () => undefined);
  const db = drizzle({ client: pool, schema });

  try {
    return await db.transaction(async (tx) => {
      await tx.execute(sql`SELECT pg_advisory_xact_lock(${SEED_LOCK_KEY})`);

      const tableCounts = async () => {
        const [c] = await tx.select({ n: count() }).from(categories);
        const [p] = await tx.select({ n: count() }).from(products);
        const [u] = await tx.select({ n: count() }).from(users);
        return { categories: c?.n ?? 0, products: p?.n ?? 0, users: u?.n ?? 0 };
      };

      const existing = await tableCounts();
      if (!opts.force) {
        if (existing.products > 0) {
          log(
            `seed: skipped, already seeded (${existing.categories} categories, ${existing.products} products, ${existing.users} users); pass --force to reseed`,
          );
          return { seeded: false, ...existing };
        }
        if (existing.categories > 0 || existing.users > 0) {
          // Seeding on top would collide on slugs/emails and mix datasets.
          throw new Error(
            `${doing} refused: products is empty but categories (${existing.categories}) or users (${existing.users}) are not; rerun with force (--force) to wipe them and reseed`,
          );
        }
      } else {
        // No CASCADE on purpose: if some other table grows a FK to these, the
        // reseed fails loudly rather than silently wiping that table too.
        await tx.execute(sql`TRUNCATE ${products}, ${categories}, ${users} RESTART IDENTITY`);
        log(
          `seed: force: wiped ${existing.products} products, ${existing.categories} categories, ${existing.users} users (Redis is not touched: the cache's version keys now outrank the new rows, so unlink the prefix's keys, e.g. redis-cli --scan --pattern 'ec:*' | xargs -r redis-cli unlink, with your REDIS_URL, database and CACHE_PREFIX)`,
        );
      }

      const catSpecs = buildCategories(want.categories);
      const inserted: { id: number; slug: string; department: Department }[] = [];
      for (let i = 0; i < catSpecs.length; i += BATCH_SIZE) {
        const batch = catSpecs.slice(i, i + BATCH_SIZE);
        const rows = await tx
          .insert(categories)
          .values(batch.map(({ department: _d, ...row }) => row))
          .returning({ id: categories.id, slug: categories.slug });
        // RETURNING order is not guaranteed, so join back on the unique slug.
        const bySlug = new Map(batch.map((c) => [c.slug, c.department]));
        for (const row of rows) {
          const department = bySlug.get(row.slug);
          if (department) inserted.push({ ...row, department });
        }
        log(`categories ${Math.min(i + BATCH_SIZE, catSpecs.length)}/${catSpecs.length}`);
      }
      // Ids are assigned in insertion order; sorting makes the product→category
      // draw independent of RETURNING order.
      inserted.sort((a, b) => a.id - b.id);

      const productRng = new Rng(SEEDS.products);
      for (let i = 0; i < want.products; i += BATCH_SIZE) {
        const end = Math.min(i + BATCH_SIZE, want.products);
        const batch: NewProduct[] = [];
        for (let j = i; j < end; j++) batch.push(buildProduct(productRng, j, inserted));
        await tx.insert(products).values(batch);
        log(`products ${end}/${want.products}`);
      }

      const userRng = new Rng(SEEDS.users);
      for (let i = 0; i < want.users; i += BATCH_SIZE) {
        const end = Math.min(i + BATCH_SIZE, want.users);
        const batch: NewUser[] = [];
        for (let j = i; j < end; j++) batch.push(buildUser(userRng, j));
        await tx.insert(users).values(batch);
        log(`users ${end}/${want.users}`);
      }

      const after = await tableCounts();
      log(
        `seed: done (${after.categories} categories, ${after.products} products, ${after.users} users)`,
      );
      return { seeded: true, ...after };
    });
  } catch (err) {
    if (err instanceof Error && err.message.startsWith(doing)) throw err;
    throw explainPgError(err, target, doing);
  } finally {
    await pool.end().catch(() => undefined);
  }
}

function parseArgs(argv: readonly string[]): SeedOptions {
  const opts: SeedOptions = {};
  for (const arg of argv) {
    const m = /^--(categories|products|users)=(\d+)$/.exec(arg);
    if (m?.[1] && m[2]) {
      const key = m[1] as "categories" | "products" | "users";
      opts[key] = Number(m[2]);
    } else if (arg === "--force") {
      opts.force = true;
    } else {
      throw new Error(
        `unknown argument "${arg}": usage: npx tsx db/seed.ts [--categories=N] [--products=N] [--users=N] [--force]`,
      );
    }
  }
  return opts;
}

async function main(): Promise<void> {
  const { url: databaseUrl, from } = scriptDatabaseUrl();
  const opts = parseArgs(process.argv.slice(2));
  console.log(`target: ${redact(databaseUrl)} (from ${from})`);
  const started = Date.now();
  const result = await seedDatabase(databaseUrl, { ...opts, log: (line) => console.log(line) });
  console.log(`${result.seeded ? "seeded" : "unchanged"} in ${Date.now() - started} ms`);
}

if (isMainModule(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
