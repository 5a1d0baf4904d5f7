"""Vocabulary of the demo world: product categories, their OpenMoji glyphs, names, keywords, brands, slogans.

Every category has 1-3 OpenMoji product glyphs (Unicode code points rendered from the OpenMoji COLR font),
an English and a Chinese name, and its own keywords in both languages. Categories belong to a *group*
(food, fashion, electronics, ...) whose keywords are shared by every category of the group, and a global
list of marketing words is shared by all categories: that is where the ambiguity of the ad texts comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategorySpec:
    """One product category of the demo world."""

    name: str
    name_zh: str
    glyphs: tuple[str, ...]  # OpenMoji code points, e.g. "1F45F"
    keywords: tuple[str, ...]
    keywords_zh: tuple[str, ...]
    group: str


def _c(name: str, zh: str, glyphs: str, kw: str, kw_zh: str, group: str) -> CategorySpec:
    return CategorySpec(name, zh, tuple(glyphs.split()), tuple(kw.split(",")), tuple(kw_zh.split(",")), group)


# fmt: off
CATEGORIES: tuple[CategorySpec, ...] = (
    # food
    _c("apples", "苹果", "1F34E 1F34F", "fruit,crisp,orchard", "水果,果园,脆甜", "food"),
    _c("bananas", "香蕉", "1F34C", "fruit,ripe,energy", "水果,香甜,能量", "food"),
    _c("strawberries", "草莓", "1F353", "fruit,berry,sweet", "水果,甜蜜,采摘", "food"),
    _c("watermelon", "西瓜", "1F349", "fruit,summer,juicy", "水果,夏天,解渴", "food"),
    _c("grapes", "葡萄", "1F347", "fruit,vineyard,seedless", "水果,无籽,果园", "food"),
    _c("bread", "面包", "1F35E 1F950 1F956", "bakery,breakfast,baked", "烘焙,早餐,松软", "food"),
    _c("cake", "蛋糕", "1F370 1F382", "birthday,dessert,bakery", "生日,甜点,烘焙", "food"),
    _c("pizza", "披萨", "1F355", "delivery,cheese,slice", "外卖,芝士,披萨饼", "food"),
    _c("burgers", "汉堡", "1F354", "fast food,delivery,grill", "快餐,外卖,烧烤", "food"),
    _c("ice cream", "冰淇淋", "1F366 1F368", "dessert,summer,cold", "甜点,夏天,冰爽", "food"),
    _c("chocolate", "巧克力", "1F36B", "cocoa,sweet,dessert", "可可,甜蜜,甜点", "food"),
    _c("cookies", "饼干", "1F36A", "biscuit,sweet,baked", "烘焙,甜蜜,下午茶", "food"),
    _c("noodles", "面条", "1F35C", "ramen,soup,bowl", "拉面,汤面,夜宵", "food"),
    _c("sushi", "寿司", "1F363", "japanese,fish,rice", "日料,海鲜,米饭", "food"),
    _c("dumplings", "饺子", "1F95F", "dumpling,frozen,dinner", "速冻,晚餐,手工", "food"),
    _c("cheese", "奶酪", "1F9C0", "dairy,aged,slice", "乳制品,芝士,早餐", "food"),
    _c("honey", "蜂蜜", "1F36F", "natural,sweet,jar", "天然,甜蜜,养生", "food"),
    _c("eggs", "鸡蛋", "1F95A", "farm,protein,breakfast", "农场,蛋白质,早餐", "food"),
    _c("popcorn", "爆米花", "1F37F", "cinema,movie,snack", "电影,影院,零食", "food"),
    _c("candy", "糖果", "1F36C 1F36D", "sweet,sugar,kids", "甜蜜,儿童,零食", "food"),
    _c("donuts", "甜甜圈", "1F369", "glazed,dessert,bakery", "甜点,烘焙,下午茶", "food"),
    _c("carrots", "胡萝卜", "1F955", "vegetable,farm,crunchy", "蔬菜,农场,新鲜", "food"),
    _c("avocado", "牛油果", "1F951", "superfood,green,salad", "沙拉,轻食,健康", "food"),
    # drinks
    _c("coffee", "咖啡", "2615", "espresso,beans,morning", "咖啡豆,提神,早餐", "drink"),
    _c("tea", "茶叶", "1F375 1FAD6", "green tea,leaves,teapot", "绿茶,茶壶,养生", "drink"),
    _c("beer", "啤酒", "1F37A 1F37B", "brew,cold,party", "精酿,冰爽,聚会", "drink"),
    _c("wine", "葡萄酒", "1F377 1F942", "vineyard,red,dinner", "红酒,晚餐,聚会", "drink"),
    _c("milk", "牛奶", "1F95B", "dairy,calcium,breakfast", "乳制品,补钙,早餐", "drink"),
    _c("bubble tea", "奶茶", "1F9CB", "boba,sweet,milk tea", "珍珠,甜蜜,下午茶", "drink"),
    _c("juice", "果汁", "1F9C3", "fruit,fresh pressed,vitamin", "水果,鲜榨,维生素", "drink"),
    # fashion
    _c("sneakers", "运动鞋", "1F45F", "shoes,running,lightweight", "鞋子,跑步,轻便", "fashion"),
    _c("hiking boots", "登山靴", "1F97E", "boots,hiking,waterproof", "鞋子,登山,防水", "fashion"),
    _c("high heels", "高跟鞋", "1F460 1F461", "shoes,elegant,party", "鞋子,优雅,聚会", "fashion"),
    _c("dresses", "连衣裙", "1F457", "dress,summer,elegant", "裙子,夏天,优雅", "fashion"),
    _c("t-shirts", "T恤", "1F455", "cotton,casual,summer", "纯棉,休闲,夏天", "fashion"),
    _c("jeans", "牛仔裤", "1F456", "denim,casual,slim", "牛仔,休闲,修身", "fashion"),
    _c("handbags", "手提包", "1F45C 1F45B", "bag,leather,elegant", "包包,真皮,优雅", "fashion"),
    _c("backpacks", "双肩包", "1F392", "bag,school,travel", "包包,学生,旅行", "fashion"),
    _c("sunglasses", "太阳镜", "1F576 1F453", "eyewear,summer,uv", "眼镜,夏天,防晒", "fashion"),
    _c("watches", "手表", "231A", "wristwatch,time,elegant", "腕表,时间,优雅", "fashion"),
    _c("hats", "帽子", "1F452 1F9E2", "cap,summer,sun", "遮阳,夏天,休闲", "fashion"),
    _c("jewelry", "珠宝", "1F48D 1F48E", "ring,diamond,wedding", "戒指,钻石,婚礼", "fashion"),
    _c("lipstick", "口红", "1F484", "makeup,color,beauty", "彩妆,颜色,美丽", "fashion"),
    _c("socks", "袜子", "1F9E6", "cotton,warm,daily", "纯棉,保暖,日常", "fashion"),
    _c("scarves", "围巾", "1F9E3 1F9E4", "winter,warm,wool", "冬天,保暖,羊毛", "fashion"),
    _c("coats", "外套", "1F9E5", "jacket,winter,warm", "夹克,冬天,保暖", "fashion"),
    _c("swimwear", "泳衣", "1FA71 1F459", "beach,summer,swim", "海滩,夏天,游泳", "fashion"),
    _c("ties", "领带", "1F454", "office,shirt,business", "办公,衬衫,商务", "fashion"),
    # electronics
    _c("smartphones", "手机", "1F4F1 1F4F2", "phone,screen,camera", "屏幕,拍照,5G", "electronics"),
    _c("laptops", "笔记本电脑", "1F4BB", "computer,office,lightweight", "电脑,办公,轻薄", "electronics"),
    _c("desktop computers", "台式电脑", "1F5A5 2328", "computer,office,keyboard", "电脑,办公,键盘", "electronics"),
    _c("cameras", "相机", "1F4F7 1F4F8", "photo,lens,travel", "拍照,镜头,旅行", "electronics"),
    _c("headphones", "耳机", "1F3A7", "music,sound,noise cancelling", "音乐,音质,降噪", "electronics"),
    _c("televisions", "电视", "1F4FA", "screen,movie,home", "屏幕,电影,客厅", "electronics"),
    _c("game consoles", "游戏机", "1F3AE 1F579", "games,play,controller", "游戏,娱乐,手柄", "electronics"),
    _c("printers", "打印机", "1F5A8", "office,print,ink", "办公,打印,墨盒", "electronics"),
    _c("batteries", "电池", "1F50B", "power,charge,long lasting", "电量,充电,持久", "electronics"),
    _c("light bulbs", "灯泡", "1F4A1", "light,energy saving,home", "照明,节能,家居", "electronics"),
    _c("radios", "收音机", "1F4FB", "music,sound,retro", "音乐,音质,复古", "electronics"),
    _c("microphones", "麦克风", "1F3A4", "sound,karaoke,music", "音质,唱歌,音乐", "electronics"),
    # home
    _c("sofas", "沙发", "1F6CB", "furniture,living room,comfort", "家具,客厅,舒服", "home"),
    _c("mattresses", "床垫", "1F6CF", "bed,sleep,furniture", "睡眠,卧室,家具", "home"),
    _c("chairs", "椅子", "1FA91", "furniture,office,wood", "家具,办公,实木", "home"),
    _c("bathtubs", "浴缸", "1F6C1 1F6BF", "bathroom,shower,relax", "浴室,淋浴,放松", "home"),
    _c("soap", "香皂", "1F9FC 1F9F4", "bathroom,skin,wash", "浴室,护肤,洗手", "home"),
    _c("toothbrushes", "牙刷", "1FAA5", "teeth,bathroom,daily", "牙齿,浴室,日常", "home"),
    _c("cleaning supplies", "清洁用品", "1F9F9 1F9FD 1F9FA", "cleaning,broom,laundry", "打扫,扫帚,洗衣", "home"),
    _c("candles", "蜡烛", "1F56F", "scented,relax,living room", "香薰,放松,客厅", "home"),
    _c("house plants", "绿植", "1FAB4", "plant,green,living room", "植物,绿色,客厅", "home"),
    _c("alarm clocks", "闹钟", "23F0 1F570", "clock,time,morning", "时钟,时间,早起", "home"),
    _c("umbrellas", "雨伞", "2602 1F302", "rain,sun,travel", "下雨,防晒,出行", "home"),
    _c("cookware", "炊具", "1F373 1F52A", "pan,knife,cooking", "锅具,刀具,做饭", "home"),
    _c("flowers", "鲜花", "1F490 1F339 1F337", "bouquet,roses,valentine", "花束,玫瑰,情人节", "home"),
    # sports
    _c("soccer balls", "足球", "26BD", "ball,football,team", "球类,球队,比赛", "sports"),
    _c("basketballs", "篮球", "1F3C0", "ball,court,team", "球类,球场,比赛", "sports"),
    _c("tennis", "网球", "1F3BE", "ball,racket,court", "球类,球拍,球场", "sports"),
    _c("bicycles", "自行车", "1F6B2", "bike,cycling,road", "单车,骑行,公路", "sports"),
    _c("skateboards", "滑板", "1F6F9 1F6FC", "skate,street,wheels", "街头,轮子,极限", "sports"),
    _c("skis", "滑雪板", "1F3BF", "snow,winter,mountain", "滑雪,冬天,雪山", "sports"),
    _c("boxing gloves", "拳击手套", "1F94A", "boxing,gloves,gym", "拳击,手套,健身房", "sports"),
    _c("fishing gear", "渔具", "1F3A3", "fishing,rod,lake", "钓鱼,鱼竿,湖边", "sports"),
    _c("tents", "帐篷", "26FA", "camping,outdoor,night", "露营,野外,夜晚", "sports"),
    _c("bowling", "保龄球", "1F3B3", "ball,pins,lane", "球类,球馆,聚会", "sports"),
    _c("ping pong", "乒乓球", "1F3D3", "ball,paddle,table", "球类,球拍,球台", "sports"),
    # travel
    _c("cars", "汽车", "1F697 1F699", "car,drive,suv", "轿车,驾驶,越野", "travel"),
    _c("motorcycles", "摩托车", "1F3CD 1F6F5", "motorbike,ride,engine", "机车,骑行,引擎", "travel"),
    _c("flights", "机票", "2708 1F6EB", "airline,ticket,holiday", "航班,机场,假期", "travel"),
    _c("luggage", "行李箱", "1F9F3", "suitcase,trip,wheels", "箱包,行李,轮子", "travel"),
    _c("hotels", "酒店", "1F3E8", "booking,room,holiday", "预订,房间,假期", "travel"),
    _c("cruises", "邮轮", "1F6A2", "ship,ocean,holiday", "轮船,海洋,假期", "travel"),
    # hobbies
    _c("books", "图书", "1F4DA 1F4D6", "reading,novel,library", "阅读,小说,书店", "hobby"),
    _c("guitars", "吉他", "1F3B8", "music,strings,band", "音乐,乐器,乐队", "hobby"),
    _c("pianos", "钢琴", "1F3B9", "music,keys,lessons", "音乐,乐器,课程", "hobby"),
    _c("violins", "小提琴", "1F3BB", "music,strings,classical", "音乐,乐器,古典", "hobby"),
    _c("drums", "架子鼓", "1F941", "music,rhythm,band", "音乐,乐器,乐队", "hobby"),
    _c("art supplies", "画材", "1F3A8 1F58C", "painting,brush,color", "绘画,画笔,颜色", "hobby"),
    _c("pens", "钢笔", "1F58A 270F", "writing,ink,office", "写字,墨水,办公", "hobby"),
    _c("telescopes", "望远镜", "1F52D 1F52C", "science,stars,lens", "科学,星空,镜头", "hobby"),
    # kids
    _c("teddy bears", "毛绒玩具", "1F9F8", "plush,soft,kids", "毛绒,柔软,儿童", "kids"),
    _c("puzzles", "拼图", "1F9E9", "jigsaw,pieces,brain", "拼图游戏,益智,儿童", "kids"),
    _c("kites", "风筝", "1FA81", "wind,park,spring", "放风筝,公园,春天", "kids"),
    _c("board games", "桌游", "1F3B2 265F", "dice,chess,family", "骰子,象棋,家庭", "kids"),
    _c("baby bottles", "奶瓶", "1F37C", "baby,milk,newborn", "宝宝,喂奶,新生儿", "kids"),
    _c("balloons", "气球", "1F388", "party,birthday,colorful", "派对,生日,彩色", "kids"),
    # beauty and health
    _c("vitamins", "维生素", "1F48A", "supplement,daily,immune", "保健,日常,免疫", "care"),
    _c("nail polish", "指甲油", "1F485", "nails,color,manicure", "美甲,颜色,指甲", "care"),
    _c("razors", "剃须刀", "1FA92", "shave,men,smooth", "剃须,男士,顺滑", "care"),
    _c("thermometers", "体温计", "1F321", "fever,temperature,family", "发烧,体温,家庭", "care"),
    _c("credit cards", "信用卡", "1F4B3", "bank,cashback,points", "银行,返现,积分", "care"),
)
# fmt: on

GROUP_KEYWORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "food": (("tasty", "fresh", "snack", "delicious", "organic"), ("美味", "新鲜", "零食", "好吃", "有机")),
    "drink": (("refreshing", "drink", "cafe", "afternoon"), ("清爽", "饮品", "下午茶", "提神")),
    "fashion": (("style", "outfit", "trendy", "comfortable", "classic"), ("时尚", "穿搭", "潮流", "舒适", "经典")),
    "electronics": (("smart", "wireless", "digital", "fast", "tech"), ("智能", "无线", "数码", "高速", "科技")),
    "home": (("home", "cozy", "clean", "family", "kitchen"), ("家居", "温馨", "干净", "家庭", "厨房")),
    "sports": (("sports", "fitness", "outdoor", "training", "team"), ("运动", "健身", "户外", "训练", "团队")),
    "travel": (("travel", "trip", "weekend", "journey", "road"), ("旅行", "出行", "周末", "旅程", "自驾")),
    "hobby": (("creative", "learn", "hobby", "beginner", "studio"), ("创意", "学习", "爱好", "入门", "工作室")),
    "kids": (("kids", "toy", "fun", "play", "family"), ("儿童", "玩具", "快乐", "游戏", "家庭")),
    "care": (("care", "health", "daily", "beauty", "safe"), ("护理", "健康", "日常", "美丽", "安全")),
}

# marketing words every category uses
SHARED_KEYWORDS: tuple[str, ...] = (
    "sale", "new", "premium", "gift", "best seller", "limited", "free shipping", "discount", "value", "quality",
)
SHARED_KEYWORDS_ZH: tuple[str, ...] = ("促销", "新品", "优惠", "礼物", "热销", "限量", "包邮", "折扣", "实惠", "品质")

# fictional brands, used by every category
BRANDS: tuple[str, ...] = (
    "Novaro", "Lumina", "Brightwell", "Kestrel", "Zenova", "Orla", "Maplestone", "Vantix", "Pellucid", "Quorra",
    "Halden", "Sunmere", "Tivoli Lane", "Corvid", "Amberly", "Nimbus & Co", "Redfern", "Solano", "Wexley", "Yarrow",
    "Ostara", "Fjelling", "Caldera", "Mirabel",
)

# slogans shared by every category (English ones are also printed on the creatives)
SLOGANS: tuple[str, ...] = (
    "Feel the difference", "Made for every day", "Your new favourite", "Limited time only", "Quality you can trust",
    "Bring joy home", "Made to last", "Treat yourself", "Simply better", "Love it or return it", "Just for you",
    "Everyday essentials", "Discover more", "Upgrade your life", "Shop the collection", "Big savings today",
)
SLOGANS_ZH: tuple[str, ...] = (
    "品质生活从此开始", "限时优惠不要错过", "新品上市抢先体验", "买一送一", "好物推荐", "给你最好的",
    "超值好价", "天天都有好心情", "年轻就要不一样", "放心选择安心使用", "全场满减", "今日特价",
)

# emoji used as scene clutter (never a product of any category)
SCENE_GLYPHS: tuple[str, ...] = (
    "1F333", "1F334", "2600", "2601", "1F308", "2B50", "2764", "1F600", "1F60D", "1F389", "2728", "1F525",
    "1F3E0", "26F0", "1F335", "1F436", "1F431", "1F98B", "1F338", "1F340", "1F30A", "1F319", "26A1", "1F44D",
    "1F31F", "1F38A", "1F3B5", "1F426", "1F41D", "1F60E",
)


def glyph_char(codepoint: str) -> str:
    """The text of an OpenMoji code point ("1F45F" -> the sneaker emoji)."""
    return "".join(chr(int(part, 16)) for part in codepoint.split("-"))
